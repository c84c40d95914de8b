"""What evaluate_corpus results support beyond point metrics: bootstrap intervals per corpus and for the average over
corpora, the paired comparison of runs against a baseline (Holm-corrected over corpora), and calibration. Intervals
and paired tests cover every registered metric (metrics.METRICS)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from exhubert_jax.evaluation import bootstrap as bs, calibration as cal, paired_tests as paired
from exhubert_jax.evaluation.dimensional import ccc_intervals
from exhubert_jax.evaluation.metrics import METRICS


def result_arrays(result: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """(labels, predictions, speakers) of an evaluate_corpus result."""
    utts = result["utterances"]
    return (np.asarray([u["label"] for u in utts], np.int64), np.asarray([u["pred"] for u in utts], np.int64),
            [u.get("speaker") for u in utts])


def add_metric_intervals(result: dict, n_resamples: int, seed: int) -> dict[str, np.ndarray] | None:
    """Set result['intervals'] (every registered metric's interval, the method named) and return {metric: its (B,)
    resampled values}; None and nothing set when n_resamples is 0 or the split is empty."""
    if n_resamples <= 0 or not result["utterances"]:
        return None
    y, pred, speakers = result_arrays(result)
    result["intervals"], samples = bs.resampled(y, pred, len(result["class_names"]), speakers, n_resamples, seed,
                                                name=result["corpus"])
    return samples


def add_intervals(result: dict, n_resamples: int, seed: int) -> np.ndarray | None:
    """add_metric_intervals, returning the (B,) resampled UARs only."""
    samples = add_metric_intervals(result, n_resamples, seed)
    return None if samples is None else samples["uar"]


def result_values(result: dict) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(dimensional targets (n, K) with NaN where unknown, regression outputs (n, K), dimension names) of a result."""
    names = tuple(result["dimensional"]["dims"])
    utts = result["utterances"]
    truth = np.asarray([[np.nan if v is None else v for v in u["dims"]] for u in utts], np.float64).reshape(-1, len(names))
    return truth, np.asarray([u["values"] for u in utts], np.float64).reshape(-1, len(names)), names


def add_dimensional_intervals(result: dict, n_resamples: int, seed: int) -> None:
    """Set result['dimensional']['intervals'] (CCC per dimension and of their mean, resampled by speaker where it
    can be); nothing when the model has no dimensions, n_resamples is 0 or the split is empty."""
    if n_resamples <= 0 or not result.get("dimensional") or not result["utterances"]:
        return
    truth, pred, names = result_values(result)
    speakers = [u.get("speaker") for u in result["utterances"]]
    result["dimensional"]["intervals"], _ = ccc_intervals(truth, pred, names, speakers, n_resamples, seed,
                                                          result["corpus"])


def mean_ccc(results: Sequence[dict]) -> float | None:
    """The unweighted mean over corpora of each corpus's mean CCC (None when no result has dimensions)."""
    values = [r["dimensional"]["mean_ccc"] for r in results if r.get("dimensional")]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


def average_interval(samples: Sequence[np.ndarray | None]) -> list[float] | None:
    """Interval of the unweighted average over corpora (each resampled independently); None when any is missing."""
    if not samples or any(s is None for s in samples):
        return None
    return bs.mean_interval(samples)


def average_intervals(samples: Sequence[Mapping[str, np.ndarray] | None]) -> dict[str, list[float] | None] | None:
    """{metric: interval of its unweighted average over corpora} from add_metric_intervals's samples, for every
    registered metric; None when any corpus has none."""
    if not samples or any(s is None for s in samples):
        return None
    return {k: bs.mean_interval([s[k] for s in samples]) for k in METRICS}


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the defined values (NaN when none is)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def compare_to_baseline(cells: Mapping[str, Mapping[str, dict]], baseline: str, n_resamples: int,
                        seed: int) -> list[dict]:
    """Rows {column, corpus, diff, interval, p, p_holm, significant, method, metrics} of every other column against
    the baseline column, on each corpus; `cells` maps column -> corpus -> evaluate_corpus result. The top-level
    figures are UAR's; row['metrics'] holds every registered metric's {diff, interval, p, p_holm, significant}.
    Holm corrects over the corpora of each column, each metric on its own. With several corpora, an 'average' row
    holds the mean difference and its interval (per metric under 'metrics'). Refuses (TestSetMismatch) a pair
    scored on different test sets."""
    rows: list[dict] = []
    base = cells[baseline]
    for column, results in cells.items():
        if column == baseline:
            continue
        mine, boots = [], []
        for corpus, r in results.items():
            paired.check_same_test_set(corpus, base[corpus], r, baseline, column)
            y, preds, speakers = paired.aligned(base[corpus], r)
            row, boot = paired.compare_metrics(y, preds, len(r["class_names"]), speakers, n_resamples, seed,
                                               name=corpus)
            mine.append({"column": column, "corpus": corpus, **row})
            boots.append(boot)
        rows += paired.add_holm(mine)
        if len(boots) > 1:
            average = {k: {"diff": _nanmean([row["metrics"][k]["diff"] for row in mine]),
                           "interval": bs.mean_interval([b[k] for b in boots])} for k in METRICS}
            rows.append({"column": column, "corpus": "average", **average["uar"], "metrics": average})
    return rows


def result_logits(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, k), labels) of an evaluate_corpus result."""
    utts = result["utterances"]
    k = len(result["class_names"])
    return np.asarray([u["logits"] for u in utts], np.float64).reshape(-1, k), np.asarray([u["label"] for u in utts])


def add_calibration(result: dict, temperature: float = 1.0, show_before: bool = False) -> dict:
    """Set result['calibration'] (ECE, MCE, NLL, Brier at this temperature; with show_before also
    'calibration_before' at temperature 1) and return the reliability bins at this temperature."""
    logits, y = result_logits(result)
    result["calibration"] = cal.summary(logits, y, temperature)
    if show_before:
        result["calibration_before"] = cal.summary(logits, y, 1.0)
    return cal.reliability(cal.probabilities(logits, temperature), y)


def fit_validation_temperature(checkpoint, validation: Sequence[dict]) -> dict:
    """Fit one temperature on the pooled validation results, store it as CHECKPOINT/temperature.json, and return
    its document."""
    pooled = [result_logits(r) for r in validation]
    logits = np.concatenate([lg for lg, _ in pooled])
    y = np.concatenate([t for _, t in pooled])
    t = cal.fit_temperature(logits, y)
    cal.save_temperature(checkpoint, t, {r["corpus"]: len(r["utterances"]) for r in validation},
                         cal.nll(logits, y), cal.nll(logits, y, t))
    return cal.load_temperature(checkpoint)[0]
