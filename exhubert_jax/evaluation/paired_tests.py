"""Paired comparison of two runs on the same test utterances, for every registered metric (metrics.METRICS): the
difference with a paired-bootstrap interval, an approximate-randomisation p-value (Noreen 1989; Riezler & Maxwell
2005), and Holm's correction over corpora (each metric corrected on its own).

A row keeps UAR's figures at its top level (diff, interval, p, p_holm, significant: what earlier rows held) and every
metric's, UAR's included, under row["metrics"][name]."""

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


def compare_metrics(y_true, preds, num_classes: int, speakers: Sequence | None, n_resamples: int, seed: int,
                    name: str = "", level: float = bs.LEVEL) -> tuple[dict, dict[str, np.ndarray]]:
    """({diff, interval, p (UAR's), method, resamples, seed, metrics: {metric: {diff, interval, p}}}, {metric: the
    (B,) bootstrap differences}) of metric(run 1) - metric(run 0) for every registered metric.

    The interval is the percentile interval of the paired bootstrap (both runs on the same resample); the p-value is
    two-sided, from n_resamples exchanges of the two runs' predictions, (1 + #{|d*| >= |d|}) / (1 + B), so that it
    is never 0 and is uniform under the null that the two runs are exchangeable. One set of resamples and of
    exchanges serves every metric. A metric undefined on the test set has diff NaN, no interval and p NaN."""
    units = bs.make_units(y_true, preds, num_classes, speakers)
    point = bs.of_every_metric(bs.observed(units))
    boots = {k: np.diff(v, axis=1)[:, 0] for k, v in
             bs.of_every_metric(bs.resample(units, n_resamples, bs.rng_for(seed, name, "paired"))).items()}
    nulls = bs.of_every_metric(bs.swap(units, n_resamples, bs.rng_for(seed, name, "swap")))
    per_metric = {}
    for k in bs.METRICS:
        diff = float(np.diff(point[k])[0])
        null = np.diff(nulls[k], axis=1)[:, 0]
        if np.isnan(diff):
            p = float("nan")
        else:  # an exchange where the metric is undefined is not as extreme
            extreme = np.sum(np.abs(null) >= abs(diff) - 1e-12)
            p = float((1 + extreme) / (1 + n_resamples))
        per_metric[k] = {"diff": diff, "interval": bs.percentile_interval(boots[k], level), "p": p}
    row = {**per_metric["uar"], "method": bs.method_label(units), "resamples": int(n_resamples), "seed": int(seed),
           "metrics": per_metric}
    return row, boots


def compare(y_true, preds, num_classes: int, speakers: Sequence | None, n_resamples: int, seed: int,
            name: str = "", level: float = bs.LEVEL) -> tuple[dict, np.ndarray]:
    """(compare_metrics's row, the (B,) bootstrap differences of UAR(run 1) - UAR(run 0))."""
    row, boots = compare_metrics(y_true, preds, num_classes, speakers, n_resamples, seed, name, level)
    return row, boots["uar"]


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
    """Set p_holm and significant on each row (UAR's, at the top level) and on each metric under row["metrics"],
    correcting over the rows (one run's corpora), each metric on its own; a NaN p stays NaN, never significant,
    and is left out of the correction of the others."""
    _holm_into(rows, alpha)
    names = list(dict.fromkeys(k for r in rows for k in r.get("metrics", {})))
    for k in names:
        _holm_into([r["metrics"][k] for r in rows if k in r.get("metrics", {})], alpha)
    return rows


def _holm_into(entries: list[dict], alpha: float = ALPHA) -> None:
    """Set p_holm and significant on dicts holding a p, over those whose p is defined."""
    defined = [e for e in entries if not np.isnan(e["p"])]
    for e, adj in zip(defined, holm([e["p"] for e in defined])):
        e.update(p_holm=adj, significant=bool(adj < alpha))
    for e in entries:
        if np.isnan(e["p"]):
            e.update(p_holm=float("nan"), significant=False)
