"""A protocol's summary: per run and evaluation every registered metric (metrics.METRICS: UAR, WA, macro-F1, kappa,
...) on the test split, then per metric the mean ± standard deviation over the runs and the value pooled over all
their test utterances, each with a 95 % bootstrap interval (utterances resampled; the mean's interval resamples every
run independently), as JSON and as one Markdown table.

A column's summary keeps UAR's figures at its top level (mean, sd, mean_interval, pooled, pooled_interval,
runs_intervals: what earlier summaries held) and every metric's, UAR's included, under summary[column]["metrics"]."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from exhubert_jax.evaluation import bootstrap as bs, metrics
from exhubert_jax.evaluation.metrics import METRICS

RESAMPLES, SEED = 1000, 0


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), (float(x.std(ddof=1)) if x.size > 1 else None)


def _pooled(results: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int], int]:
    """(targets, predictions, classes) of all runs' test utterances together, classes matched by name (folds may
    differ in which of a corpus's native labels they hold)."""
    names = sorted({n for r in results for n in r["class_names"]})
    index = {n: i for i, n in enumerate(names)}
    y_true = [index[r["class_names"][t]] for r in results for t in r["targets"]]
    y_pred = [index[r["class_names"][p]] for r in results for p in r["preds"]]
    return y_true, y_pred, len(names)


def pooled_values(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Every registered metric over the test utterances of all runs together, classes matched by name."""
    y_true, y_pred, k = _pooled(results)
    return metrics.all_of(metrics.confusion_matrix(y_true, y_pred, k))


def pooled_uar(results: Sequence[Mapping[str, Any]]) -> float:
    """UAR over the test utterances of all runs together, classes matched by name."""
    y_true, y_pred, k = _pooled(results)
    return metrics.uar(y_true, y_pred, k)


def run_values(result: Mapping[str, Any]) -> dict[str, float]:
    """Every registered metric of one run's evaluation: as the evaluation stored it (the runner stores 'uar'),
    else from its targets and predictions."""
    out, cm = {}, None
    for k, m in METRICS.items():
        if k in result:
            out[k] = float("nan") if result[k] is None else float(result[k])
            continue
        if cm is None:
            cm = metrics.confusion_matrix(result["targets"], result["preds"], len(result["class_names"]))
        out[k] = m.value(cm)
    return out


def run_samples(result: Mapping[str, Any], name: str, n: int = RESAMPLES) -> tuple[dict, dict[str, np.ndarray]]:
    """(one run's bootstrap.resampled intervals of every metric, {metric: its (B,) resampled values}): an utterance
    bootstrap."""
    return bs.resampled(result["targets"], result["preds"], len(result["class_names"]), None, n, SEED, name)


def run_interval(result: Mapping[str, Any], name: str, n: int = RESAMPLES) -> tuple[list[float], np.ndarray]:
    """(95 % interval of one run's test UAR, its resampled UARs): an utterance bootstrap."""
    info, samples = run_samples(result, name, n)
    return info["uar"], samples["uar"]


def summarize(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{column: {mean, sd, mean_interval, pooled, pooled_interval, runs_intervals (UAR's), metrics: {metric: the
    same keys}, n_runs, n}} over the runs that have that evaluation."""
    out = {}
    for col in columns:
        named = [(r["run"], r["evaluations"][col]) for r in runs if col in r["evaluations"]]
        results = [res for _, res in named]
        values = [run_values(res) for res in results]
        per_run = [run_samples(res, f"{name}/{col}") for name, res in named]
        y_true, y_pred, k = _pooled(results)
        pooled_info, _ = bs.resampled(y_true, y_pred, k, None, RESAMPLES, SEED, f"pooled/{col}")
        pooled = pooled_values(results)
        per_metric = {}
        for m in METRICS:
            mean, sd = mean_sd([v[m] for v in values])
            per_metric[m] = {"mean": mean, "sd": sd, "mean_interval": bs.mean_interval([s[m] for _, s in per_run]),
                             "pooled": pooled[m], "pooled_interval": pooled_info[m],
                             "runs_intervals": {name: info[m] for (name, _), (info, _) in zip(named, per_run)}}
        out[col] = {**per_metric["uar"], "metrics": per_metric, "n_runs": len(results),
                    "n": sum(len(r["targets"]) for r in results)}
    return out


_UNSEEN = {True: "yes", False: "no", None: "unknown"}  # test speakers disjoint from the corpus's train speakers


def _pct(v: float | None, percent: bool = True) -> str:
    """A metric in % with one decimal (or with 3 decimals for one not in %); n/a for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.1f}" if percent else f"{v:.3f}"


def _iv(interval: Sequence[float] | None, percent: bool = True) -> str:
    """' [low, high]' in % (or with 3 decimals), or nothing."""
    return f" [{_pct(interval[0], percent)}, {_pct(interval[1], percent)}]" if interval else ""


def _metric_summary(summary: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A column summary's figures of one metric (summaries without 'metrics' hold UAR's only)."""
    if "metrics" in summary:
        return summary["metrics"].get(name) or {}
    return summary if name == "uar" else {}


def table(runs: Sequence[Mapping[str, Any]], columns: Sequence[str], summary: Mapping[str, Mapping[str, Any]],
          what: str) -> str:
    """Markdown: a row per run (whether its test speakers are unseen in the test corpus's own train and validation
    splits, test utterances, every registered metric per evaluation with its 95 % interval: UAR of every evaluation
    first, then WA, ...), then mean ± sd and the pooled value, in % (kappa with 3 decimals), with their
    intervals."""
    cols = [(c, k, m) for k, m in METRICS.items() for c in columns]
    head = [f"| {what} | test corpus | test speakers unseen | n | " + " | ".join(f"{c} {m.heading}" for c, _, m in cols)
            + " |", "|---|---|---|---:|" + "---:|" * len(cols)]
    rows = []
    for r in runs:
        first = next(iter(r["evaluations"].values()))
        cells = []
        for c, k, m in cols:
            if c not in r["evaluations"]:
                cells.append("")
                continue
            s = _metric_summary(summary[c], k)
            cells.append(_pct(run_values(r["evaluations"][c])[k], m.percent)
                         + _iv(s.get("runs_intervals", {}).get(r["run"]), m.percent))
        unseen = _UNSEEN[r.get("test_speakers_disjoint")]
        rows.append(f"| {r['run']} | {r['corpus']} | {unseen} | {len(first['targets'])} | " + " | ".join(cells) + " |")
    n = summary[columns[0]]["n"]
    means, pooled = [], []
    for c, k, m in cols:
        s = _metric_summary(summary[c], k)
        means.append(f"{_pct(s.get('mean'), m.percent)} ± {_pct(s.get('sd'), m.percent)}"
                     f"{_iv(s.get('mean_interval'), m.percent)}")
        pooled.append(_pct(s.get("pooled"), m.percent) + _iv(s.get("pooled_interval"), m.percent))
    rows.append(f"| mean ± sd ({len(runs)} runs) | | | | " + " | ".join(means) + " |")
    rows.append(f"| pooled over all test utterances | | | {n} | " + " | ".join(pooled) + " |")
    return "\n".join(head + rows)
