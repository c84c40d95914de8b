"""Output folders: one that cannot be written is an error naming it and the flag that chooses another place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ExhubertError


class UnwritableError(ExhubertError, OSError):
    """An output folder that cannot be made or written (read-only file system, no permission)."""


def make_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make `path` (and its parents) and check a file can be written in it; else UnwritableError naming `path`
    and `flag`, the option that chooses another place."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UnwritableError(f"cannot write in {path} ({e.strerror or e}); choose another place with {flag}") \
            from None
    return path
