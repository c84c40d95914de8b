"""Output folders: one that cannot be written is an error naming it and the flag that chooses another place; an
output that does not fit (a full disk, a used-up quota) is one naming it and the bytes it needs."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from exhubert_jax.errors import ExhubertError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class UnwritableError(ExhubertError, OSError):
    """An output folder that cannot be made or written (read-only file system, no permission)."""


def _refuse(path: Path, flag: str, error: OSError) -> UnwritableError:
    """The error naming an unwritable output and the flag that moves it."""
    return UnwritableError(f"cannot write in {path} ({error.strerror or error}); choose another place with {flag}")


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Check, creating nothing, that `path` could be made and written: a file can be written in it, or in its
    nearest existing ancestor; else UnwritableError naming `path` and `flag`."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a directory", str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise _refuse(path, flag, e) from None
    return path


def make_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make `path` (and its parents) and check a file can be written in it; else UnwritableError naming `path`
    and `flag`, the option that chooses another place."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _refuse(path, flag, e) from None
    return check_writable(path, flag)


class DiskFullError(ExhubertError, OSError):
    """An output that did not fit: the disk is full or the quota used up (what was at its path is unchanged).
    `detail` is the system's words and the sizes, `needed` the bytes it needs when known."""

    def __init__(self, path: Path, detail: str, needed: int | None = None):
        super().__init__(f"cannot write {path} ({detail}); nothing there was changed. Free space or choose another "
                         "place, and run the command again")
        self.path, self.detail, self.needed = path, detail, needed


def disk_full(error: BaseException | None) -> str | None:
    """The system's words for a full disk ("No space left on device") or a used-up quota ("Disk quota exceeded")
    when `error` or an exception in its chain is one, else None: an OSError's errno, or those words or a Rust
    library's "(os error 28)" in a message (safetensors, array_record and TensorFlow wrap the OSError so)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return os.strerror(error.errno)
        text = str(error)
        for code in DISK_FULL:
            if os.strerror(code) in text or f"(os error {code})" in text:
                return os.strerror(code)
        error = error.__cause__ or error.__context__
    return None


def size_text(n: int) -> str:
    """A byte count for people: 912 bytes, 436.0 kB, 1.3 MB, 2.1 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system of `path` (or of its nearest existing ancestor); None when unreadable."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        return shutil.disk_usage(existing).free if existing else None
    except OSError:
        return None


def disk_full_error(path: str | os.PathLike, why: str, needed: int | None = None,
                    written: int | None = None) -> DiskFullError:
    """The one-line error for an output that did not fit: its path, the system's words, the bytes it needs (else the
    bytes it had when the disk filled) and those free there, and that what was at `path` is unchanged."""
    free = free_bytes(path) if why == os.strerror(errno.ENOSPC) else None  # a quota is not the disk's free space
    sizes = [f"needs about {size_text(needed)}" if needed else
             f"{size_text(written)} written when it stopped" if written else "",
             f"{size_text(free)} free there" if free is not None else ""]
    detail = ", ".join(s for s in sizes if s)
    return DiskFullError(Path(path), f"{why}: {detail}" if detail else why, needed)


@contextlib.contextmanager
def sized_output(path: str | os.PathLike, needed: Callable[[], int | None]) -> Iterator[None]:
    """Within this block a full disk is a DiskFullError naming `path` and needed(), the bytes it needs (counted only
    then, when that is costly or known only as the output is written)."""
    try:
        yield
    except Exception as e:
        why = disk_full(e)
        if why is None:
            raise
        raise disk_full_error(path, why, needed()) from e
