"""Ctrl-C at safe points only: a KeyboardInterrupt raised inside JAX's Python code (a jit trace, a garbage-collection
callback, Orbax's event loop) can be swallowed ("Exception ignored in _xla_gc_callback") or leave XLA's threads
running into a crash at exit. While a command runs, SIGINT sets a flag; the KeyboardInterrupt is raised once the main
thread is back in code outside those libraries, and never inside a `held()` block (a write that must finish)."""

from __future__ import annotations

import _thread
import contextlib
import importlib.util
import signal
import threading
import time
from typing import Any, Iterator

# Libraries whose Python code runs under C++ (XLA, TensorStore) or in callbacks from it.
UNSAFE_PACKAGES = ("jax", "jaxlib", "flax", "orbax", "tensorstore")
POKE_S = 0.05  # how often a deferred Ctrl-C looks again whether the main thread has reached a safe point


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it stopped in words (the command's one `interrupted: ...` line says it)."""


class _State:
    """The one deferral state of the process (signal handlers run in the main thread only)."""

    installed = 0  # nesting depth of install()
    held = 0  # nesting depth of held()
    pending = False  # a Ctrl-C not raised yet
    poking = False
    roots: tuple[str, ...] = ()


def _package_roots() -> tuple[str, ...]:
    """The folders of UNSAFE_PACKAGES (found without importing them) and the frozen import machinery."""
    roots = ["<frozen importlib"]
    for name in UNSAFE_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        roots += [str(p).rstrip("/") + "/" for p in (spec.submodule_search_locations or [])] if spec else []
    return tuple(roots)


def _safe(frame: Any) -> bool:
    """Whether no frame of the main thread's stack belongs to an unsafe library or an import in progress."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_State.roots):
            return False
        frame = frame.f_back
    return True


def _poke() -> None:
    """Thread: re-deliver a deferred Ctrl-C to the main thread until it has been raised or dropped."""
    try:
        while _State.pending and _State.installed and not _State.held:
            time.sleep(POKE_S)
            if _State.pending and _State.installed and not _State.held:
                _thread.interrupt_main(signal.SIGINT)
    finally:
        _State.poking = False


def _handle(signum: int, frame: Any) -> None:
    """SIGINT handler: raise now at a safe point, else remember it."""
    _State.pending = True
    if not _State.held and _safe(frame):
        _State.pending = False
        raise KeyboardInterrupt
    if not _State.held and not _State.poking:
        _State.poking = True
        threading.Thread(target=_poke, name="ctrl-c", daemon=True).start()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within this block (main thread only; elsewhere a no-op), Ctrl-C is raised at safe points only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _State.roots:
        _State.roots = _package_roots()
    before = signal.signal(signal.SIGINT, _handle)
    _State.installed += 1
    try:
        yield
    finally:
        _State.installed -= 1
        signal.signal(signal.SIGINT, before)
        if not _State.installed:
            _State.pending = False


@contextlib.contextmanager
def held(drop: bool = False) -> Iterator[None]:
    """Ctrl-C waits until this block has finished (a write that must be whole), then is raised; with drop=True
    (the command is stopping already) it is dropped instead."""
    _State.held += 1
    try:
        yield
    finally:
        _State.held -= 1
        if not _State.held and _State.pending and _State.installed:
            _State.pending = False
            if not drop:
                raise KeyboardInterrupt
