"""The base class of every error a user can cause (bad flags, data, checkpoints): command-line tools print its
one-line message, without a traceback."""

from __future__ import annotations


class ExhubertError(Exception):
    """A user error (bad input, a damaged or mismatched file): the message is one line naming the path and the fix."""


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (TensorStore's status message hides under Orbax's wrapper)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error


def one_line(error: BaseException, limit: int = 240) -> str:
    """`Type: message` of an exception's root cause on one line, cut to `limit` characters."""
    error = root_cause(error)
    text = " ".join(str(error).split()) or "no detail"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}"


def reraise_interrupt(error: BaseException) -> None:
    """Raise the Ctrl-C (KeyboardInterrupt) an exception wraps anywhere in its chain: an interrupted read or write is
    an interrupt, never damage or a full disk."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt):
            raise error
        error = error.__cause__ or error.__context__
