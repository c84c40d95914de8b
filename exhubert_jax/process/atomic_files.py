"""Write a folder, a file or a set of files all at once: into a temporary sibling, then renamed into place; never a
mix of old and new, and never a partial file. A full disk or quota is one DiskFullError naming the output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.interrupts import blocked
from exhubert_jax.process.output_dirs import disk_full, disk_full_error


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


def _size(folder: Path) -> int:
    """The bytes of the files below a folder."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _discard(tmp: Path, error: BaseException, out: Path, needed: int | None) -> None:
    """Remove a temporary folder after its block failed; a full disk raises DiskFullError naming `out` and the bytes
    it needs (`needed`, a nested DiskFullError's, else those written when it stopped), other errors go on as they
    are."""
    why = disk_full(error) if isinstance(error, Exception) else None  # Ctrl-C stays an interrupt
    needed = needed or getattr(error, "needed", None)
    written = _size(tmp) if why and not needed else None
    shutil.rmtree(tmp, ignore_errors=True)
    if why:
        raise disk_full_error(out, why, needed, written) from error


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, *sources: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block finishes it replaces `out` in one rename (an
    older `out` is removed after). On an error or Ctrl-C the temporary folder is removed and `out` is unchanged; a
    full disk is a DiskFullError naming `out` and `needed`, the bytes it needs when known.
    Ctrl-C and SIGTERM wait during the swap, so an interrupt leaves the old folder or the new one."""
    out = check_output(out, *sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; give it the mode of any other new folder
        yield tmp
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        with blocked():  # Ctrl-C and SIGTERM wait for the renames
            if out.exists():
                os.rename(out, old)
            os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        _discard(tmp, e, out, needed)
        raise


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `paths` (files of one folder, the main one first) to write them into
    under their own names. When the block finishes, each one written replaces its path in one rename (the main one
    last) and a path not written is removed (a part an earlier output had, e.g. an ONNX file's external data). On an
    error or Ctrl-C the folder is removed and every path is unchanged; a full disk is a DiskFullError naming the main
    path and `needed`, the bytes it needs when known. Ctrl-C and SIGTERM wait during the renames."""
    files = [Path(p).absolute() for p in paths]
    if len({f.parent for f in files}) != 1:
        raise ValueError(f"atomic_files writes files of one folder, not {', '.join(map(str, files))}")
    files[0].parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{files[0].name}.", suffix=".partial", dir=files[0].parent))
    try:
        yield tmp
        written = [f for f in files if (tmp / f.name).exists()]
        with blocked():  # Ctrl-C and SIGTERM wait for the renames
            for f in reversed(written):
                os.replace(tmp / f.name, f)
            for f in files:
                if f not in written:
                    f.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as e:
        _discard(tmp, e, files[0], needed)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write (it has path's name, in a temporary folder); when the block
    finishes the file replaces `path` in one rename. See atomic_files."""
    with atomic_files(path, needed=needed) as tmp:
        yield tmp / Path(path).name


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file all at once: a temporary sibling, then one rename onto `path` (never half-written)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def umask() -> int:
    """The process umask (read by setting it and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
