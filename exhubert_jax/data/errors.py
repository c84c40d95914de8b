"""Errors raised by the data pipeline: each message names the file (or corpus) and the problem."""

from __future__ import annotations

import difflib

from exhubert_jax.errors import ExhubertError


class DataError(ExhubertError):
    """Base class of every data-pipeline error."""


class UnknownCorpusError(DataError):
    """A corpus name that is not in the registry."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"unknown corpus {name!r}; known corpora: {', '.join(known)} "
                         "(or pass --manifest FILE to read your own corpus)")


class MissingSourceError(DataError):
    """A corpus folder or file that does not exist."""

    def __init__(self, path: str, what: str = "corpus folder"):
        self.path = path
        super().__init__(f"{what} not found: {path}")


class LayoutError(DataError):
    """A file that does not follow its corpus's documented layout."""

    def __init__(self, corpus: str, path: str, problem: str):
        self.corpus, self.path, self.problem = corpus, path, problem
        super().__init__(f"{corpus}: {path}: {problem}")


class UnknownLabelError(DataError):
    """A native label that the mapping table does not cover."""

    def __init__(self, corpus: str, path: str, label: str, known: list[str], more: dict[str, int] | None = None):
        self.corpus, self.path, self.label = corpus, path, label
        others = "".join(f"; also unknown: {k!r} ({n} files)" for k, n in (more or {}).items())
        near = difflib.get_close_matches(label, known, n=3, cutoff=0.5)
        hint = f"nearest known: {', '.join(near)}" if near else f"none of its {len(known)} labels is close"
        super().__init__(f"{corpus}: {path}: unknown label {label!r}{others} ({hint}; add rows with --label-map "
                         "FILE)")


class ManifestError(DataError):
    """A manifest that cannot be read, or one bad row of it (with its line number)."""

    def __init__(self, path: str, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"manifest {where}: {problem}")


class AudioError(DataError):
    """An audio file that is unreadable, empty, too short, or not finite."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class SplitError(DataError):
    """A split method that cannot be applied to a corpus."""


class PreparedDataError(DataError):
    """A prepared dataset that is missing, incomplete or of another format version."""
