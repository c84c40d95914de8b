"""Run train.py or evaluate.py with one injected fault: `python tests/fault_hooks.py FAULT SCRIPT [ARGS...]`.

FAULT is `open:REGEX:kill` (SIGKILL the process when a file whose path matches REGEX is opened for writing),
`open:REGEX:enospc` (that open fails with ENOSPC, as on a full disk), `open:REGEX:full` (the disk fills as that file
is written: its first FULL_AFTER bytes land, then a write fails with ENOSPC), `sigint:N`, `sigterm:N` or `sigusr1:N`
(that signal to itself as training step N starts) or `none`. SCRIPT is `train` or `evaluate`.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigusr1": signal.SIGUSR1}
FULL_AFTER = 512  # what a file opened with the 'full' action takes before its disk fills


class FillingFile:
    """A file on a disk that fills: writes land until FULL_AFTER bytes (or characters), then the write that does
    not fit lands in part and fails with ENOSPC, without a file name (as a real write does)."""

    def __init__(self, f):
        self._f, self._room = f, FULL_AFTER

    def write(self, data):
        """Write what fits; ENOSPC when not all of it does."""
        if len(data) > self._room:
            self._f.write(data[:self._room])
            self._f.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def failing_open(pattern: str, action: str, real_open=builtins.open):
    """An open() that kills the process ('kill'), fails with ENOSPC ('enospc') or gives a FillingFile ('full') on
    writing a path matching pattern."""
    regex = re.compile(pattern)
    if action not in ("kill", "enospc", "full"):
        raise SystemExit(f"unknown open action {action!r}")

    def hooked(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and regex.search(os.fspath(file)):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "full":
                return FillingFile(real_open(file, mode, *args, **kwargs))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    return hooked


def patch_open(pattern: str, action: str) -> None:
    """Install failing_open for the whole process (Orbax writes its JSON files through builtins.open)."""
    builtins.open = io.open = failing_open(pattern, action)


def fill_disk(monkeypatch, pattern: str) -> None:
    """In a test: the disk fills as a file matching pattern is written (FillingFile), through builtins.open and
    io.open (pathlib's)."""
    hooked = failing_open(pattern, "full")
    monkeypatch.setattr(builtins, "open", hooked)
    monkeypatch.setattr(io, "open", hooked)


def signal_at_step(n: int, signum: int) -> None:
    """Send this process `signum` as the training loop starts step n (steps 1..n-1 are done)."""
    from exhubert_jax.training.loop import Trainer

    original = Trainer._train_step

    def hooked(self, step: int) -> None:
        if step == n:
            os.kill(os.getpid(), signum)
        return original(self, step)

    Trainer._train_step = hooked


def main(argv: list[str]) -> int:
    """Install the fault, then run the script's main()."""
    fault, script, *args = argv
    sys.path.insert(0, str(ROOT))
    if fault.startswith("open:"):
        pattern, action = fault[len("open:"):].rsplit(":", 1)
        patch_open(pattern, action)
    elif fault.split(":")[0] in SIGNALS:
        name, step = fault.split(":")
        signal_at_step(int(step), SIGNALS[name])
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}")
    module = __import__(script)
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
