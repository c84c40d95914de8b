"""Output folders: one that cannot be written is an error naming it and the flag that chooses another place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from exhubert_jax.errors import ExhubertError


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
