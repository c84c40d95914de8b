"""Run train.py or evaluate.py with one injected fault: `python tests/fault_hooks.py FAULT SCRIPT [ARGS...]`.

FAULT is `open:REGEX:kill` (SIGKILL the process when a file whose path matches REGEX is opened for writing),
`open:REGEX:enospc` (that open fails with ENOSPC, as on a full disk), `sigint:N` (SIGINT to itself as training
step N starts) or `none`. SCRIPT is `train` or `evaluate`.
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


def failing_open(pattern: str, action: str, real_open=builtins.open):
    """An open() that kills the process ('kill') or fails with ENOSPC ('enospc') on writing a path matching pattern."""
    regex = re.compile(pattern)
    if action not in ("kill", "enospc"):
        raise SystemExit(f"unknown open action {action!r}")

    def hooked(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and regex.search(os.fspath(file)):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    return hooked


def patch_open(pattern: str, action: str) -> None:
    """Install failing_open for the whole process (Orbax writes its JSON files through builtins.open)."""
    builtins.open = io.open = failing_open(pattern, action)


def sigint_at_step(n: int) -> None:
    """SIGINT this process as the training loop starts step n (steps 1..n-1 are done)."""
    from exhubert_jax.training.loop import Trainer

    original = Trainer._train_step

    def hooked(self, step: int) -> None:
        if step == n:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, step)

    Trainer._train_step = hooked


def main(argv: list[str]) -> int:
    """Install the fault, then run the script's main()."""
    fault, script, *args = argv
    sys.path.insert(0, str(ROOT))
    if fault.startswith("open:"):
        pattern, action = fault[len("open:"):].rsplit(":", 1)
        patch_open(pattern, action)
    elif fault.startswith("sigint:"):
        sigint_at_step(int(fault.split(":")[1]))
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}")
    module = __import__(script)
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
