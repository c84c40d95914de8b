"""Where a duplicate pair sits: within one split, across the splits of one corpus, across corpora, or between folds
of one corpus (which share their files by design, and are not listed); and whether it leaks a validation or test
file into training data."""

from __future__ import annotations

from typing import Any, Sequence

from exhubert_jax.data.audit.scan import SplitScan

WITHIN, ACROSS_SPLITS, ACROSS_CORPORA, FOLDS = "within split", "across splits", "across corpora", "folds of one corpus"
PLACES = (WITHIN, ACROSS_SPLITS, ACROSS_CORPORA)


def placement(a: SplitScan, b: SplitScan) -> str:
    """Where a pair of files from splits a and b sits."""
    if a.corpus == b.corpus:
        return WITHIN if a.split == b.split else ACROSS_SPLITS
    return FOLDS if a.base == b.base else ACROSS_CORPORA


def leak(a: SplitScan, b: SplitScan) -> str | None:
    """'test' or 'validation' when one side is that split and the other a training split (of any corpus), else
    None."""
    splits = {a.split, b.split}
    if "train" in splits and len(splits) == 2:
        return (splits - {"train"}).pop()
    return None


def side(scan: SplitScan, i: int) -> dict[str, Any]:
    """One file of a pair as the report names it."""
    return {"corpus": scan.corpus, "split": scan.split, "path": scan.paths[i], "speaker": scan.speakers[i]}


def pair_record(scans: Sequence[SplitScan], a: tuple[int, int], b: tuple[int, int], kind: str,
                **extra: Any) -> dict[str, Any] | None:
    """A pair ((scan, item) each) as the report lists it, the training side first; None for folds of one corpus."""
    sa, sb = scans[a[0]], scans[b[0]]
    where = placement(sa, sb)
    if where == FOLDS:
        return None
    if sb.split == "train" and sa.split != "train":
        (sa, a), (sb, b) = (sb, b), (sa, a)
    return {"kind": kind, "placement": where, "leak": leak(sa, sb), "a": side(sa, a[1]), "b": side(sb, b[1]), **extra}
