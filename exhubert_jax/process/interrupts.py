"""Ctrl-C and SIGTERM at safe points only: a KeyboardInterrupt raised inside JAX's Python code (a jit trace, a
garbage-collection callback, Orbax's event loop) can be swallowed ("Exception ignored in _xla_gc_callback") or leave
XLA's threads running into a crash at exit. While a command runs, SIGINT and SIGTERM (what SLURM and Kubernetes send on
preemption) set a flag; the KeyboardInterrupt is raised once the main thread is back in code outside those libraries,
and never inside a `held()` block (a write that must finish). One that still lands in a callback whose exceptions
Python ignores (a weakref callback) is delivered again, and one still waiting after REDELIVER_SECONDS is re-sent.
The signal that stopped the command sets its exit status (128 + its number: 130 for Ctrl-C, 143 for SIGTERM).

`blocked()` holds both signals back across an exec (the huge-page restart): they stay pending in the kernel, and the
new process receives them once its handlers are in place, so none is lost in between."""

from __future__ import annotations

import _thread
import contextlib
import importlib.util
import signal
import sys
import threading
from typing import Any, Callable, Iterator

# Libraries whose Python code runs under C++ (XLA, TensorStore) or in callbacks from it.
UNSAFE_PACKAGES = ("jax", "jaxlib", "flax", "orbax", "tensorstore")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDELIVER_SECONDS = 0.5  # a deferred stop not raised by then is sent again (in case its return hook was lost)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it stopped in words (the command's one `interrupted: ...` line says it)."""


class _State:
    """The one deferral state of the process (signal handlers run in the main thread only)."""

    installed = 0  # nesting depth of deferred()
    held = 0  # nesting depth of held()
    pending = False  # a Ctrl-C not raised yet
    resent = False  # _redeliver sent the stop again; its handler call is stale if the stop was raised meanwhile
    signum: int | None = None  # the first stop signal received while installed
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


def _redeliver() -> None:
    """Timer thread: send a stop that still waits outside a held() block again (the main thread's handler decides)."""
    if _State.pending and _State.installed and not _State.held:
        _State.resent = True
        _thread.interrupt_main(_State.signum or signal.SIGINT)


def _defer() -> None:
    """Remember a Ctrl-C; it is delivered again when the main thread returns to a safe frame."""
    _State.pending = True
    if not _State.held:
        sys.setprofile(_watch)
        timer = threading.Timer(REDELIVER_SECONDS, _redeliver)
        timer.daemon = True
        timer.start()


def _handle(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM handler: raise now at a safe point, else remember it (a stale resend does nothing)."""
    resent, _State.resent = _State.resent, False
    if resent and not _State.pending:
        return  # the stop it was resent for was raised meanwhile (and is being handled)
    _State.signum = _State.signum or signum
    if not _State.held and _safe(frame):
        _State.pending = False
        _unwatch()
        raise KeyboardInterrupt
    _defer()


def _rearm(unraisable: Any) -> None:
    """sys.unraisablehook: a KeyboardInterrupt that landed in a callback Python ignores (a weakref callback, a
    __del__) is delivered again instead of being lost; anything else goes to the previous hook (Python's own when
    the chain of hooks, installed in turn by other code, leads back here)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _State.installed:
        _State.pending = True  # delivered again shortly, from outside this hook
        threading.Timer(0.01, _thread.interrupt_main, (_State.signum or signal.SIGINT,)).start()
    elif _rearm.passing:
        sys.__unraisablehook__(unraisable)
    else:
        _rearm.passing = True
        try:
            _rearm.previous(unraisable)
        finally:
            _rearm.passing = False


_rearm.passing = False  # set while an unraisable exception is passed down the chain of hooks


@contextlib.contextmanager
def deferred(then_ignore: bool = False) -> Iterator[None]:
    """Within this block (main thread only; elsewhere a no-op), Ctrl-C and SIGTERM are raised at safe points only;
    then_ignore: ignore both after it (a command's process shutting down) instead of restoring the handlers before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _State.roots:
        _State.roots = _package_roots()
    if not _State.installed:
        _State.signum = None
    before, hook = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}, sys.unraisablehook
    if hook is not _rearm:
        _rearm.previous, sys.unraisablehook = hook, _rearm
    _State.installed += 1
    try:
        _unblock()  # a stop held back across the huge-page restart arrives now, into _handle
        yield
    finally:
        _State.installed -= 1
        for s, handler in before.items():
            signal.signal(s, signal.SIG_IGN if then_ignore else handler)
        if sys.unraisablehook is _rearm and hook is not _rearm:
            sys.unraisablehook = hook
        if not _State.installed:
            _State.pending = False
            _unwatch()


def _unblock() -> None:
    """Unblock the stop signals (a process started inside blocked(), by its exec, receives the pending ones now)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """The stop signals are held back by the kernel in this block (and across an exec in it); the signal mask before
    it is restored after, and what arrived meanwhile is delivered then."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def stop_signal() -> int:
    """The signal that stopped the command (SIGINT when none was recorded, e.g. KeyboardInterrupt raised by code)."""
    return _State.signum or signal.SIGINT


def stop_name() -> str:
    """How the stop is named to the user: Ctrl-C, or the signal's name (SIGTERM)."""
    signum = stop_signal()
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


@contextlib.contextmanager
def checkpoint_requests(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Within this block (main thread), SIGUSR1 (a scheduler's warning before preemption) asks for a checkpoint
    without stopping; yields `requested()`, which says whether one was asked for since it last said so."""
    signum = getattr(signal, "SIGUSR1", None) if enabled else None
    asked = [False]

    def requested() -> bool:
        was, asked[0] = asked[0], False
        return was

    if signum is None or threading.current_thread() is not threading.main_thread():
        yield requested
        return
    before = signal.signal(signum, lambda *_: asked.__setitem__(0, True))
    try:
        yield requested
    finally:
        signal.signal(signum, before)


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
