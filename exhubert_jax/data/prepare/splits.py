"""The paper's three split methods (own, by speaker, 10 %/10 % random), speaker-independent k-fold, and a
label-stratified hold-out; all deterministic for a seed."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Sequence

import numpy as np

from exhubert_jax.data.errors import SplitError
from exhubert_jax.data.sources.readers import SPLITS, Utterance

METHODS = ("own", "speaker", "random")
VALID_FRACTION = TEST_FRACTION = 0.1
HOLDOUT_FRACTION = 0.2  # validation taken from a fold's train list when the fold has none of its own
# Corpora whose k-fold unit is not the speaker: IEMOCAP's sessions (two speakers each) are its natural folds.
FOLD_UNITS = {"iemocap": lambda speaker: speaker[:5]}
SPLIT_RULE_VERSION = 1  # bump when a change to this module's functions (or FOLD_UNITS') moves any utterance


def split_rule() -> dict:
    """The data that decides every split: the rule's version and the constants above (part of corpus versions)."""
    return {"version": SPLIT_RULE_VERSION, "methods": list(METHODS), "valid": VALID_FRACTION, "test": TEST_FRACTION,
            "holdout": HOLDOUT_FRACTION, "fold_units": sorted(FOLD_UNITS)}


def derive_seed(*keys: object) -> int:
    """A 64-bit seed from any keys, stable across runs, machines and Python versions (no hash())."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:8], "little")


def auto_method(utts: Sequence[Utterance]) -> str:
    """'own' if every utterance has a split, else 'speaker' if every one has a speaker (>= 3), else 'random'."""
    if utts and all(u.split for u in utts):
        return "own"
    if utts and all(u.speaker for u in utts) and len({u.speaker for u in utts}) >= 3:
        return "speaker"
    return "random"


def _own(utts: Sequence[Utterance]) -> list[str]:
    missing = [u.path for u in utts if u.split not in SPLITS]
    if missing:
        raise SplitError(f"split method 'own' needs a split for every file; {missing[0]} has none "
                         f"({len(missing)} files in all)")
    return [u.split for u in utts]


def _closest_prefix(counts: Sequence[int], target: float) -> int:
    """How many of the leading groups make a total closest to target (at least one)."""
    total, k = counts[0], 1
    while k < len(counts) and abs(total + counts[k] - target) < abs(total - target):
        total, k = total + counts[k], k + 1
    return k


def _by_speaker(utts: Sequence[Utterance], seed: int, key: str) -> list[str]:
    if any(u.speaker is None for u in utts):
        raise SplitError("split method 'speaker' needs a speaker for every file; "
                         f"{next(u.path for u in utts if u.speaker is None)} has none (use 'random')")
    speakers = sorted({u.speaker for u in utts})
    if len(speakers) < 3:
        raise SplitError(f"split method 'speaker' needs at least 3 speakers for speaker-disjoint "
                         f"train/validation/test; this corpus has {len(speakers)} (use 'random')")
    order = [speakers[i] for i in np.random.default_rng(derive_seed(seed, key, "speakers")).permutation(len(speakers))]
    per = {s: 0 for s in speakers}
    for u in utts:
        per[u.speaker] += 1
    assign: dict[str, str] = {}
    for name, fraction, keep in (("test", TEST_FRACTION, 2), ("validation", VALID_FRACTION, 1)):
        rest = [s for s in order if s not in assign]
        k = min(_closest_prefix([per[s] for s in rest], fraction * len(utts)), len(rest) - keep)
        assign.update({s: name for s in rest[:k]})
    return [assign.get(u.speaker, "train") for u in utts]


def _random(utts: Sequence[Utterance], seed: int, key: str) -> list[str]:
    n = len(utts)
    if n < 3:
        raise SplitError(f"a random split needs at least 3 files; this corpus has {n}")
    n_test, n_val = (max(1, round(f * n)) for f in (TEST_FRACTION, VALID_FRACTION))
    out = ["train"] * n
    for rank, i in enumerate(np.random.default_rng(derive_seed(seed, key, "files")).permutation(n)):
        out[i] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
    return out


def assign_splits(utts: Sequence[Utterance], method: str, seed: int = 0, key: str = "") -> list[str]:
    """Split name for each utterance (same order). utts must be sorted; key (the corpus name) decorrelates
    corpora that share a seed."""
    if list(utts) != sorted(utts):
        raise SplitError("assign_splits needs the utterances sorted (for determinism)")
    if method == "auto":
        method = auto_method(utts)
    if method == "own":
        return _own(utts)
    if method == "speaker":
        return _by_speaker(utts, seed, key)
    if method == "random":
        return _random(utts, seed, key)
    raise SplitError(f"unknown split method {method!r}; use one of {', '.join(METHODS)} or 'auto'")


def with_soft_only(utts: Sequence[Utterance], hard: Sequence[bool], hard_splits: Sequence[str],
                   own: bool = False) -> list[str]:
    """The split of every utterance, given `hard_splits`, those of the ones with a hard label (in order), which were
    split alone: so an utterance kept for its label distribution alone (no majority label) never moves one with a
    hard label. It goes to its own split (own=True), else to its speaker's (where most of the speaker's others are),
    else to train."""
    by_speaker: dict[str, Counter] = {}
    for u, s in zip((u for u, h in zip(utts, hard) if h), hard_splits):
        if u.speaker is not None:
            by_speaker.setdefault(u.speaker, Counter())[s] += 1
    given = iter(hard_splits)
    return [next(given) if h else (u.split if own and u.split else by_speaker[u.speaker].most_common(1)[0][0]
                                   if u.speaker in by_speaker else "train") for u, h in zip(utts, hard)]


def shared_speakers(utts: Sequence[Utterance], splits: Sequence[str]) -> list[str]:
    """Speakers that occur in more than one split (empty when the split is speaker-independent)."""
    where: dict[str, set[str]] = {}
    for u, s in zip(utts, splits):
        if u.speaker is not None:
            where.setdefault(u.speaker, set()).add(s)
    return sorted(sp for sp, ss in where.items() if len(ss) > 1)


def parse_kfold(method: str) -> int | None:
    """K for a split method 'kfold:K', None for the other methods; a bad K is a SplitError."""
    if not method.startswith("kfold"):
        return None
    head, _, k = method.partition(":")
    if head != "kfold" or not k.isdigit() or int(k) < 2:
        raise SplitError(f"split method {method!r}: use kfold:K with K >= 2 (e.g. kfold:5)")
    return int(k)


def _fold_units(utts: Sequence[Utterance], corpus: str) -> dict[str, int]:
    """{fold unit (speaker, or IEMOCAP session): utterance count}; every utterance needs a speaker."""
    missing = [u.path for u in utts if u.speaker is None]
    if missing:
        raise SplitError(f"{corpus}: speaker-independent k-fold needs a speaker for every file; {missing[0]} has "
                         f"none ({len(missing)} files in all); this corpus cannot be split by speaker")
    unit = FOLD_UNITS.get(corpus, lambda s: s)
    counts: dict[str, int] = {}
    for u in utts:
        counts[unit(u.speaker)] = counts.get(unit(u.speaker), 0) + 1
    return counts


def kfold_assign(utts: Sequence[Utterance], k: int, corpus: str = "") -> list[int]:
    """Fold (0..k-1) of each utterance: whole speakers (IEMOCAP: sessions) per fold, balanced by utterance count.

    Largest unit first (ties by name) to the fold with the fewest utterances so far (ties: the lowest fold); the
    folds are then numbered by the first unit name they hold, so IEMOCAP's fold 1 is Session 1. No randomness:
    the same corpus gives the same folds on every run and platform."""
    counts = _fold_units(utts, corpus)
    if len(counts) < k:
        raise SplitError(f"{corpus}: {k} folds need at least {k} speakers (or sessions); this corpus has "
                         f"{len(counts)}")
    load, members = [0] * k, [[] for _ in range(k)]
    for name in sorted(counts, key=lambda n: (-counts[n], n)):
        fold = min(range(k), key=lambda f: (load[f], f))
        load[fold] += counts[name]
        members[fold].append(name)
    order = sorted(range(k), key=lambda f: min(members[f]))
    fold_of = {name: rank for rank, f in enumerate(order) for name in members[f]}
    unit = FOLD_UNITS.get(corpus, lambda s: s)
    return [fold_of[unit(u.speaker)] for u in utts]


def kfold_splits(utts: Sequence[Utterance], folds: Sequence[int], fold: int, seed: int = 0,
                 key: str = "") -> list[str]:
    """Splits of one fold: its utterances are test; of the other speakers, a seeded set closest to 10 % of the
    corpus is validation (at least one speaker), the rest train."""
    rest = sorted({u.speaker for u, f in zip(utts, folds) if f != fold})
    if len(rest) < 2:
        raise SplitError(f"{key}: fold {fold + 1} leaves {len(rest)} speaker(s) outside its test set; train and "
                         "validation need two (use fewer folds)")
    order = [rest[i] for i in np.random.default_rng(derive_seed(seed, key, fold, "validation")).permutation(len(rest))]
    per = Counter(u.speaker for u, f in zip(utts, folds) if f != fold)
    n_valid = min(_closest_prefix([per[s] for s in order], VALID_FRACTION * len(utts)), len(order) - 1)
    valid = set(order[:n_valid])
    return ["test" if f == fold else "validation" if u.speaker in valid else "train" for u, f in zip(utts, folds)]


def stratified_holdout(labels: Sequence[str], fraction: float = HOLDOUT_FRACTION, seed: int = 0,
                       key: str = "") -> list[bool]:
    """For each item, whether it is held out: a seeded round(fraction * n) of every label's items (at least one
    when the label has two or more), so the held-out part keeps the label proportions."""
    out = [False] * len(labels)
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        n = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        for j in np.random.default_rng(derive_seed(seed, key, label, "holdout")).permutation(len(idx))[:n]:
            out[idx[j]] = True
    return out
