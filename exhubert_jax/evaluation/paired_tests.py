"""Paired comparison of two runs on the same test utterances: UAR difference with a paired-bootstrap interval, an
approximate-randomisation p-value (Noreen 1989; Riezler & Maxwell 2005), and Holm's correction over corpora."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation import bootstrap as bs

ALPHA = 0.05


class TestSetMismatch(ExhubertError, ValueError):
    """Two runs scored on different test sets (other files, order or label space) cannot be paired."""


def check_same_test_set(corpus: str, a: dict, b: dict, name_a: str, name_b: str) -> None:
    """TestSetMismatch naming the corpus and the first difference between two evaluate_corpus results."""
    where = f"{corpus}: {name_b} and the baseline {name_a} were scored on different test sets"
    if a["label_space"] != b["label_space"] or a["class_names"] != b["class_names"]:
        raise TestSetMismatch(f"{where} (label spaces {a['label_space']}: {', '.join(a['class_names'])} vs "
                              f"{b['label_space']}: {', '.join(b['class_names'])}); compare runs with the same head")
    ua, ub = a["utterances"], b["utterances"]
    if len(ua) != len(ub):
        raise TestSetMismatch(f"{where} ({len(ua)} vs {len(ub)} utterances); evaluate both on the same prepared data")
    for x, y in zip(sorted(ua, key=_key), sorted(ub, key=_key)):
        if (x.get("file"), x["index"], x["label"]) != (y.get("file"), y["index"], y["label"]):
            raise TestSetMismatch(f"{where} (utterance {x['index']}: {x.get('file')} label {x['label']} vs "
                                  f"{y.get('file')} label {y['label']}); evaluate both on the same prepared data")


def _key(u: dict) -> int:
    """Sort utterances by their index in the split."""
    return int(u["index"])


def aligned(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """(labels, (2, n) predictions, speakers) of two checked results, in split order."""
    ua, ub = sorted(a["utterances"], key=_key), sorted(b["utterances"], key=_key)
    y = np.asarray([u["label"] for u in ua])
    preds = np.asarray([[u["pred"] for u in ua], [u["pred"] for u in ub]])
    return y, preds, [u.get("speaker") for u in ua]


def compare(y_true, preds, num_classes: int, speakers: Sequence | None, n_resamples: int, seed: int,
            name: str = "", level: float = bs.LEVEL) -> tuple[dict, np.ndarray]:
    """({diff, interval, p, method, resamples}, the (B,) bootstrap differences) of UAR(run 1) - UAR(run 0).

    The interval is the percentile interval of the paired bootstrap (both runs on the same resample); the p-value is
    two-sided, from n_resamples exchanges of the two runs' predictions, (1 + #{|d*| >= |d|}) / (1 + B), so that it
    is never 0 and is uniform under the null that the two runs are exchangeable."""
    units = bs.make_units(y_true, preds, num_classes, speakers)
    diff = float(np.diff(bs.uar_many(bs.observed(units)))[0])
    boot = np.diff(bs.uar_many(bs.resample(units, n_resamples, bs.rng_for(seed, name, "paired"))), axis=1)[:, 0]
    null = np.diff(bs.uar_many(bs.swap(units, n_resamples, bs.rng_for(seed, name, "swap"))), axis=1)[:, 0]
    extreme = np.sum(np.abs(null) >= abs(diff) - 1e-12)
    p = float((1 + extreme) / (1 + n_resamples))
    return {"diff": diff, "interval": bs.percentile_interval(boot, level), "p": p, "method": bs.method_label(units),
            "resamples": int(n_resamples), "seed": int(seed)}, boot


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def add_holm(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Set p_holm and significant on each row, correcting over the rows (one run's corpora)."""
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row.update(p_holm=adj, significant=bool(adj < alpha))
    return rows
