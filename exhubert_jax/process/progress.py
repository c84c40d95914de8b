"""The one progress display of every long loop (training, prepare, evaluation, timelines, embeddings), on stderr:
a tqdm bar on a terminal; where stderr is a file or a pipe (a log, a batch job), one line every
$EXHUBERT_PROGRESS_SECONDS seconds (PROGRESS_SECONDS by default) and a last one at the end once a line was written,
so a loop shorter than the interval writes nothing; nothing at all when quiet.

    train: round 40/120 (33 %), 2.1 s/round, about 2 min left, loss=1.234
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, TextIO

from exhubert_jax.errors import ExhubertError

PROGRESS_SECONDS = 30.0  # between two progress lines when stderr is no terminal
ENV = "EXHUBERT_PROGRESS_SECONDS"


class ProgressError(ExhubertError):
    """A progress interval in the environment that is no number of seconds."""


def interval() -> float:
    """Seconds between two progress lines: $EXHUBERT_PROGRESS_SECONDS, else PROGRESS_SECONDS."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return PROGRESS_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise ProgressError(f"${ENV}={text!r}: give the seconds between two progress lines (a number >= 0), or unset "
                            f"it for the default of {PROGRESS_SECONDS:g}")
    return seconds


def duration(seconds: float) -> str:
    """'40 s', '2 min', '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def amount(value: float) -> str:
    """A count as an integer, a fractional amount (seconds of audio) with one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def progress_line(desc: str, unit: str, n: float, total: float | None, start: float, elapsed: float,
                  postfix: str = "") -> str:
    """`desc: unit n/total (p %), rate, about ETA left[, postfix]` (no total: no share and no ETA)."""
    parts = [f"{desc}: {unit} {amount(n)}" + (f"/{amount(total)} ({100 * n / total:.0f} %)" if total else "")]
    done = n - start
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        parts.append(f"{rate:.1f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit}")
        if total and n >= total:
            parts.append(f"done in {duration(elapsed)}")
        elif total:
            parts.append(f"about {duration((total - n) / rate)} left")
    return ", ".join(parts + ([postfix] if postfix else []))


class LineProgress:
    """Progress for a log or a pipe: one line every `every` seconds as update() is called, and one at close() when
    a line was written and the count moved since (tqdm's update, set_postfix and close)."""

    def __init__(self, total: float | None, desc: str, unit: str, initial: float = 0, file: TextIO | None = None,
                 every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.n, self.start = total, desc, unit, initial, initial
        self.file = file or sys.stderr
        self.every = interval() if every is None else every
        self.clock = clock
        self.t0 = self.last = clock()
        self.postfix, self.shown = "", None  # the count the last line showed (None: no line yet)

    def update(self, n: float = 1) -> None:
        """Count n more; write a line when `every` seconds have passed since the last one (or the start)."""
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        """Values the next lines end with (key=value, as the bar shows them)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """The last line, when a line was written before and the count moved since."""
        if self.shown is not None and self.shown != self.n:
            self._write(self.clock())

    def _write(self, now: float) -> None:
        """One line to the file, flushed."""
        self.last, self.shown = now, self.n
        print(progress_line(self.desc, self.unit, self.n, self.total, self.start, now - self.t0, self.postfix),
              file=self.file, flush=True)

    def __enter__(self) -> LineProgress:
        """The progress itself (closed on leaving the block, as a tqdm bar is)."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close."""
        self.close()


class NoProgress(LineProgress):
    """Progress of a quiet loop: counts, writes nothing."""

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", initial: float = 0):
        super().__init__(total, desc, unit, initial, every=math.inf)

    def _write(self, now: float) -> None:
        """Nothing."""


def on_terminal(file: TextIO) -> bool:
    """Whether the file is a terminal (a closed or replaced stream is not)."""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def progress(total: float | None, desc: str, unit: str = "it", *, initial: float = 0, quiet: bool = False,
             file: TextIO | None = None):
    """The display of a loop of `total` units (None: unknown) on stderr (or `file`): NoProgress when quiet, a tqdm
    bar on a terminal, else a LineProgress; each has update(n), set_postfix(**values) and close()."""
    if quiet:
        return NoProgress(total, desc, unit, initial)
    file = file or sys.stderr
    if on_terminal(file):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file, dynamic_ncols=True)
    return LineProgress(total, desc, unit, initial, file)
