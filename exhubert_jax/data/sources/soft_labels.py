"""Label distributions (soft labels): the annotators' votes over a corpus's native labels, as a reader or a manifest's
`label_dist` column gives them, mapped into a label space through the same table as hard labels. Votes for a label
that maps to nothing (the table drops it, or the native head has no such class) are dropped and the rest renormalised
to sum to 1; an utterance none of whose votes survive has no distribution. soft_label_rule() is part of every
corpus's version (builders.corpus_version), so data prepared under another rule is refused."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from exhubert_jax.data.errors import ManifestError
from exhubert_jax.data.sources.labels import CLASSES, LabelTable, normalize_label

# The manifest column: `label:weight` pairs separated by ';' (e.g. `angry:3;neutral:1`); weights are vote counts or
# any non-negative numbers (only their ratios matter). A JSONL manifest may give a JSON object {label: weight}.
COLUMN = "label_dist"
PAIR_SEPARATOR = ";"
WEIGHT_SEPARATOR = ":"
NO_MAJORITY = "no majority"  # the native label of a manifest row with a label_dist but no label
SOFT_LABEL_RULE_VERSION = 1  # bump when a change here changes a stored distribution

Votes = tuple  # ((native label, weight), ...) sorted by label, weights > 0; None when an utterance has none
Dist = tuple  # (p_0, ..., p_{C-1}) summing to 1


def soft_label_rule() -> dict:
    """What decides a stored distribution beyond the label table and the readers: this rule's version."""
    return {"version": SOFT_LABEL_RULE_VERSION, "unmapped_votes": "dropped, the rest renormalised"}


def votes_of(counts: Mapping[str, float] | Iterable[tuple[str, float]]) -> Votes | None:
    """Votes from {label: weight} (or pairs, summed per label): the positive ones, sorted; None when none is."""
    total: Counter = Counter()
    for label, weight in (counts.items() if isinstance(counts, Mapping) else counts):
        total[label] += float(weight)
    kept = tuple(sorted((label, w) for label, w in total.items() if w > 0))
    return kept or None


def vote_weight(text: Any, what: str, where: str, line: int | None) -> float:
    """One vote weight or count (`what` names it in the message): a finite number >= 0, else a ManifestError."""
    try:
        weight = float(text)
    except (TypeError, ValueError):
        weight = math.nan
    if not math.isfinite(weight) or weight < 0:
        raise ManifestError(where, line, f"{what} {text!r} is not a finite number >= 0")
    return weight


def parse_label_dist(value: Any, where: str, line: int | None) -> Votes | None:
    """A manifest's `label_dist` cell: 'label:weight;label:weight' (or a JSON object in JSONL); None when empty. A
    pair without ':', a label given twice, a weight that is not a finite number >= 0, or weights summing to 0 is a
    ManifestError naming the file and line."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Mapping):
        pairs = [(str(k).strip(), v) for k, v in value.items()]
    elif isinstance(value, str):
        pairs = []
        for part in (p.strip() for p in value.split(PAIR_SEPARATOR)):
            if not part:
                continue
            label, sep, weight = part.rpartition(WEIGHT_SEPARATOR)
            if not sep or not label.strip():
                raise ManifestError(where, line, f"{COLUMN}: {part!r} is not label{WEIGHT_SEPARATOR}weight (expected "
                                    f"e.g. angry{WEIGHT_SEPARATOR}3{PAIR_SEPARATOR}neutral{WEIGHT_SEPARATOR}1)")
            pairs.append((label.strip(), weight.strip()))
    else:
        raise ManifestError(where, line, f"{COLUMN} must be text like angry:3;neutral:1 or a JSON object, "
                            f"not {type(value).__name__}")
    seen: set[str] = set()
    for label, _ in pairs:
        if label in seen:
            raise ManifestError(where, line, f"{COLUMN}: label {label!r} is given twice")
        seen.add(label)
    votes = votes_of([(label, vote_weight(w, f"{COLUMN}: weight of {label!r}", where, line)) for label, w in pairs])
    if votes is None:
        raise ManifestError(where, line, f"{COLUMN}: the weights sum to 0 (leave the cell empty for no distribution)")
    return votes


def _normalised(mass: Sequence[float]) -> Dist | None:
    """mass / sum(mass), None when nothing is left."""
    total = float(sum(mass))
    return tuple(float(m) / total for m in mass) if total > 0 else None


def class_distribution(table: LabelTable, corpus: str, votes: Votes | None, path: str = "?") -> Dist | None:
    """The votes over the 6 classes, through the table (an unknown label raises UnknownLabelError naming the file);
    votes for a dropped label are left out and the rest renormalised (None when none is left)."""
    if not votes:
        return None
    mass = [0.0] * len(CLASSES)
    for label, weight in votes:
        index = table.lookup(corpus, label, path).index
        if index is not None:
            mass[index] += weight
    return _normalised(mass)


def native_distribution(table: LabelTable, corpus: str, votes: Votes | None, native: Sequence[str],
                        path: str = "?") -> Dist | None:
    """The votes over a corpus's native classes (`native`, the labels its examples carry); votes for a label the
    table drops or the corpus's examples never carry are left out and the rest renormalised (None when none is
    left)."""
    if not votes:
        return None
    index = {normalize_label(label): i for i, label in enumerate(native)}
    mass = [0.0] * len(native)
    for label, weight in votes:
        if table.lookup(corpus, label, path).index is not None and normalize_label(label) in index:
            mass[index[normalize_label(label)]] += weight
    return _normalised(mass)


def sparse(dist: Dist | None) -> list | None:
    """A distribution as the prepared index stores it: [[class index, probability], ...] of its non-zero entries."""
    return None if dist is None else [[i, p] for i, p in enumerate(dist) if p > 0]
