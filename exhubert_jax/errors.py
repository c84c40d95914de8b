"""The base class of every error a user can cause (bad flags, data, checkpoints): CLIs print it as one line."""


class ExhubertError(Exception):
    """A user-facing error whose message alone says what went wrong and how to fix it."""
