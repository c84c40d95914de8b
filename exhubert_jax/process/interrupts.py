"""Ctrl-C at safe points only: a KeyboardInterrupt raised inside JAX's Python code (a jit trace, a garbage-collection
callback, Orbax's event loop) can be swallowed ("Exception ignored in _xla_gc_callback") or leave XLA's threads
running into a crash at exit. While a command runs, SIGINT sets a flag; the KeyboardInterrupt is raised once the main
thread is back in code outside those libraries, and never inside a `held()` block (a write that must finish). One
that still lands in a callback whose exceptions Python ignores (a weakref callback) is delivered again."""

from __future__ import annotations

import _thread
import contextlib
import importlib.util
import signal
import sys
import threading
from typing import Any, Iterator

# Libraries whose Python code runs under C++ (XLA, TensorStore) or in callbacks from it.
UNSAFE_PACKAGES = ("jax", "jaxlib", "flax", "orbax", "tensorstore")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it stopped in words (the command's one `interrupted: ...` line says it)."""


class _State:
    """The one deferral state of the process (signal handlers run in the main thread only)."""

    installed = 0  # nesting depth of deferred()
    held = 0  # nesting depth of held()
    pending = False  # a Ctrl-C not raised yet
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


def _watch(frame: Any, event: str, arg: Any) -> None:
    """sys.setprofile hook while a Ctrl-C waits: when unsafe code returns into a safe frame, deliver it there."""
    if event != "return" or _State.held or not frame.f_code.co_filename.startswith(_State.roots):
        return
    caller = frame.f_back
    if caller is not None and not caller.f_code.co_filename.startswith(_State.roots) and _safe(caller):
        _State.pending = False
        sys.setprofile(None)
        raise KeyboardInterrupt  # raised by the returning call, so the caller (safe code) receives it


def _unwatch() -> None:
    """Remove the _watch hook, if set."""
    if sys.getprofile() is _watch:
        sys.setprofile(None)


def _defer() -> None:
    """Remember a Ctrl-C; it is delivered again when the main thread returns to a safe frame."""
    _State.pending = True
    if not _State.held:
        sys.setprofile(_watch)


def _handle(signum: int, frame: Any) -> None:
    """SIGINT handler: raise now at a safe point, else remember it."""
    if not _State.held and _safe(frame):
        _State.pending = False
        _unwatch()
        raise KeyboardInterrupt
    _defer()


def _rearm(unraisable: Any) -> None:
    """sys.unraisablehook: a KeyboardInterrupt that landed in a callback Python ignores (a weakref callback, a
    __del__) is delivered again instead of being lost; anything else goes to the previous hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _State.installed:
        _State.pending = True  # delivered again shortly, from outside this hook
        threading.Timer(0.01, _thread.interrupt_main, (signal.SIGINT,)).start()
    else:
        _rearm.previous(unraisable)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within this block (main thread only; elsewhere a no-op), Ctrl-C is raised at safe points only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _State.roots:
        _State.roots = _package_roots()
    before, hook = signal.signal(signal.SIGINT, _handle), sys.unraisablehook
    if hook is not _rearm:
        _rearm.previous, sys.unraisablehook = hook, _rearm
    _State.installed += 1
    try:
        yield
    finally:
        _State.installed -= 1
        signal.signal(signal.SIGINT, before)
        if sys.unraisablehook is _rearm and hook is not _rearm:
            sys.unraisablehook = hook
        if not _State.installed:
            _State.pending = False
            _unwatch()


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
            _unwatch()
            if not drop:
                raise KeyboardInterrupt
