"""Uncertainty of evaluate_corpus results: bootstrap intervals per corpus and for the average over corpora, and
the paired comparison of runs against a baseline (Holm-corrected over corpora)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from . import bootstrap as bs
from . import paired


def result_arrays(result: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """(labels, predictions, speakers) of an evaluate_corpus result."""
    utts = result["utterances"]
    return (np.asarray([u["label"] for u in utts], np.int64), np.asarray([u["pred"] for u in utts], np.int64),
            [u.get("speaker") for u in utts])


def add_intervals(result: dict, n_resamples: int, seed: int) -> np.ndarray | None:
    """Set result['intervals'] (UAR, WA, macro-F1, the method named) and return the (B,) resampled UARs; None and
    nothing set when n_resamples is 0 or the split is empty."""
    if n_resamples <= 0 or not result["utterances"]:
        return None
    y, pred, speakers = result_arrays(result)
    result["intervals"], uars = bs.intervals(y, pred, len(result["class_names"]), speakers, n_resamples, seed,
                                             name=result["corpus"])
    return uars


def average_interval(samples: Sequence[np.ndarray | None]) -> list[float] | None:
    """Interval of the unweighted average over corpora (each resampled independently); None when any is missing."""
    if not samples or any(s is None for s in samples):
        return None
    return bs.mean_interval(samples)


def compare_to_baseline(cells: Mapping[str, Mapping[str, dict]], baseline: str, n_resamples: int,
                        seed: int) -> list[dict]:
    """Rows {column, corpus, diff, interval, p, p_holm, significant, method} of every other column against the
    baseline column, on each corpus; `cells` maps column -> corpus -> evaluate_corpus result. Holm corrects over the
    corpora of each column. Refuses (TestSetMismatch) a pair scored on different test sets."""
    rows: list[dict] = []
    base = cells[baseline]
    for column, results in cells.items():
        if column == baseline:
            continue
        mine, boots = [], []
        for corpus, r in results.items():
            paired.check_same_test_set(corpus, base[corpus], r, baseline, column)
            y, preds, speakers = paired.aligned(base[corpus], r)
            row, boot = paired.compare(y, preds, len(r["class_names"]), speakers, n_resamples, seed, name=corpus)
            mine.append({"column": column, "corpus": corpus, **row})
            boots.append(boot)
        rows += paired.add_holm(mine)
        if len(boots) > 1:
            diff = float(np.mean([row["diff"] for row in mine]))
            rows.append({"column": column, "corpus": "average", "diff": diff, "interval": bs.mean_interval(boots)})
    return rows
