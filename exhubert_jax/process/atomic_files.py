"""Write a folder or a file all at once: into a temporary sibling, then one rename into place; never a mix of old
and new."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

from exhubert_jax.errors import ExhubertError

_DEFERRED = {signal.SIGINT, signal.SIGTERM}


class OutputError(ExhubertError, ValueError):
    """An output folder that would overwrite or lie inside what is being read."""


def check_output(out: str | os.PathLike, *sources: str | os.PathLike) -> Path:
    """`out` as an absolute path; refused when it is a source, lies inside one, or holds one (replacing it would
    destroy what is read)."""
    out = Path(out).absolute()
    for src in map(lambda s: Path(s).absolute(), sources):
        if out == src or src in out.parents or out in src.parents:
            raise OutputError(f"output {out} is, holds or lies inside the input {src}; choose another output folder")
    return out


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, *sources: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block finishes it replaces `out` in one rename (an
    older `out` is removed after). On an error or Ctrl-C the temporary folder is removed and `out` is unchanged.
    Ctrl-C and SIGTERM wait during the swap, so an interrupt leaves the old folder or the new one."""
    out = check_output(out, *sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; give it the mode of any other new folder
        yield tmp
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
        try:
            if out.exists():
                os.rename(out, old)
            os.rename(tmp, out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file all at once: a temporary sibling, then one rename onto `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give it the mode of any other new file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def umask() -> int:
    """The process umask (read by setting it and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
