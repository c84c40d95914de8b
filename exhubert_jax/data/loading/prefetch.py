"""Batches made ahead in a background thread, with the time the training loop waited for each one.

Why a thread and not Grain (the TFDS-documented loader for JAX): the batch order is our own deterministic
round-robin over corpora (per-corpus epochs, length-sorted windows, crops drawn from the position), and its whole
state is a few integers of JSON that resume bit for bit; Grain would need that sampler re-expressed as its
transformations and its own checkpoint format, for no gain in speed: reading, normalising and padding run at
thousands of audio-seconds per second in one process (bench/loader.py), far above what a GPU step consumes, so
overlapping them with the device step in one thread is enough (JAX runs and waits for device work without
holding the GIL).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

from exhubert_jax.data.errors import DataError


class Prefetch:
    """Wraps a batch stream with next()/state()/load_state() (e.g. batching.RoundRobin).

    depth > 0: a thread keeps up to `depth` batches ready; depth 0: batches are made on demand. Either way
    `wait_s` is how long the last next() blocked and `waits` the list of all of them. state() is the stream's
    position after the last batch handed out (not after the ones made ahead), so checkpoints resume exactly;
    load_state() is allowed before the first next().
    """

    def __init__(self, stream: Any, depth: int = 2):
        self.stream, self.depth = stream, int(depth)
        self.wait_s, self.waits = 0.0, []
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = None

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                item = (next(self.stream), self.stream.state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._queue.put(e)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        if self.depth <= 0:
            batch = next(self.stream)
            self._state = self.stream.state()
        else:
            if self._thread is None:
                self._queue = queue.Queue(self.depth)
                self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
                self._thread.start()
            item = self._queue.get()
            if isinstance(item, BaseException):
                self.close()
                raise item
            batch, self._state = item
        self.wait_s = time.perf_counter() - start
        self.waits.append(self.wait_s)
        return batch

    def state(self) -> Any:
        """Position after the last batch handed out."""
        return self._state if self._state is not None else self.stream.state()

    def load_state(self, state: Any) -> None:
        """Continue the wrapped stream from a saved position (before the first batch only)."""
        if self._thread is not None or self._state is not None:
            raise DataError("Prefetch.load_state must be called before the first batch")
        self.stream.load_state(state)

    def close(self) -> None:
        """Stop the thread (batches made ahead are dropped; state() is unaffected)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __del__(self) -> None:
        self._stop.set()
