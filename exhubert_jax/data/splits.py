"""The paper's three split methods (own, by speaker, 10 %/10 % random), deterministic for a seed."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from .errors import SplitError
from .readers import SPLITS, Utterance

METHODS = ("own", "speaker", "random")
VALID_FRACTION = TEST_FRACTION = 0.1


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


def shared_speakers(utts: Sequence[Utterance], splits: Sequence[str]) -> list[str]:
    """Speakers that occur in more than one split (empty when the split is speaker-independent)."""
    where: dict[str, set[str]] = {}
    for u, s in zip(utts, splits):
        if u.speaker is not None:
            where.setdefault(u.speaker, set()).add(s)
    return sorted(sp for sp, ss in where.items() if len(ss) > 1)
