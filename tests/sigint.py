"""Send Ctrl-C (SIGINT) or SIGTERM to a command at a chosen moment and check its answer: one line, exit 130 (143 for
SIGTERM), no traceback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWER = re.compile(r"interrupted(?: by SIGTERM)?: .+; nothing half-written")
CRASH_SIGNS = ("Traceback", "Exception ignored", "Segmentation fault", "Fatal Python error")


def _default_sigint() -> None:
    """In the child: Ctrl-C's default action (a background job of a non-interactive shell starts with it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(argv: list[str], after: str | None = None, delay: float = 0.0, timeout: float = 600,
              signum: int = signal.SIGINT) -> tuple[int, str, str, bool]:
    """Run `argv` in ROOT; send `signum` `delay` s after its first output line containing `after` (after the start
    when None). (exit status, stdout, stderr, whether the signal was sent before the command ended)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    err, out, seen, ended = [], [], threading.Event(), []

    def read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if after is not None and after in line:
                seen.set()
        ended.append(stream)
        if len(ended) == 2:
            seen.set()  # the command ended without the line

    readers = [threading.Thread(target=read, args=(proc.stderr, err)),
               threading.Thread(target=read, args=(proc.stdout, out))]
    for t in readers:
        t.start()
    if after is not None:
        seen.wait(timeout)
    time.sleep(delay)
    sent = proc.poll() is None
    if sent:
        proc.send_signal(signum)
    try:
        code = proc.wait(timeout)
    finally:
        proc.kill()
        for t in readers:
            t.join()
    return code, "".join(out), "".join(err), sent


def check_answer(code: int, err: str, signum: int = signal.SIGINT) -> None:
    """Exit 128 + signum with exactly one `interrupted: ...; nothing half-written` line (`interrupted by SIGTERM: ...`
    for SIGTERM), last on stderr, and no crash."""
    assert not any(sign in err for sign in CRASH_SIGNS), err[-3000:]
    assert code == 128 + signum, f"exit {code}: {err[-3000:]}"
    lines = err.strip().splitlines()
    assert ANSWER.fullmatch(lines[-1]) and ("SIGTERM" in lines[-1]) == (signum == signal.SIGTERM), lines[-1]
    assert sum(line.startswith("interrupted") for line in lines) == 1, err[-3000:]


def python(*args: str) -> list[str]:
    """argv of this interpreter running args."""
    return [sys.executable, *args]


def busy_with_ctrl_c(seconds: float) -> float:
    """Send this process SIGINT, then compute for `seconds` (a stand-in for a long call inside JAX's code); the
    time it finished."""
    os.kill(os.getpid(), signal.SIGINT)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return time.perf_counter()
