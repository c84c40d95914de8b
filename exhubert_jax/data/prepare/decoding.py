"""Decoding a corpus's audio to 16 kHz int16 in order, in worker processes when asked: Ctrl-C reaches only the
parent, which cancels the pending work."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from exhubert_jax.data.audio import load_audio, source_rate, to_pcm16
from exhubert_jax.data.errors import AudioError


def decode(path: str) -> tuple[np.ndarray | None, str | None, int | None]:
    """(int16 PCM, None, the file's own sample rate or None when unknown) or (None, reason, None)."""
    try:
        return to_pcm16(load_audio(path)), None, source_rate(path)
    except AudioError as e:
        return None, e.reason, None


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is handled once, by the parent (no traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def decoder(workers: int, n: int) -> Iterator[Callable[[Sequence[str]], Iterable]]:
    """A function decoding paths in order; in worker processes when asked and there is enough work."""
    with worker_map(decode, workers, n) as run:
        yield run


@contextlib.contextmanager
def worker_map(function: Callable, workers: int, n: int, chunksize: int = 8) -> Iterator[Callable[[Iterable], Iterable]]:
    """A function mapping `function` (a module-level one) over its inputs in order; in worker processes when asked
    and there are at least 64 inputs (forkserver, not fork: forking a process that runs JAX's threads can deadlock).
    Pending work is cancelled on exit."""
    if workers <= 1 or n < 64:
        yield lambda inputs: map(function, inputs)
        return
    if threading.current_thread() is threading.main_thread():
        # the fork server inherits an ignored SIGINT across exec, and so does every worker it forks: Ctrl-C reaches
        # only this process, even while a worker is still starting
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, before)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_ignore_sigint)
    try:
        yield lambda inputs: pool.map(function, inputs, chunksize=chunksize)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
