"""One run per workdir: an advisory lock held for the life of the process (the OS drops it when the process dies)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.output_dirs import make_output_dir

LOCK_FILE = ".lock"


class WorkdirBusy(ExhubertError, RuntimeError):
    """A workdir that another run holds."""


def _open_lock(workdir: Path) -> int:
    """The lock file's descriptor; an unwritable workdir is an error naming it and the flag that moves it."""
    make_output_dir(workdir, "--workdir")
    return os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike, active: bool = True) -> Iterator[None]:
    """Hold `workdir`'s lock while the block runs; a second run is refused naming the holder's pid and host.
    active=False (the other processes of a multi-process run) takes no lock: the run's process 0 holds it."""
    if not active:
        yield
        return
    workdir = Path(workdir).absolute()
    fd = _open_lock(workdir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise WorkdirBusy(f"{workdir} is in use by another run ({holder}); wait for it to finish, or choose "
                              "another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
