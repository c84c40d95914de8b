"""A protocol's summary: per run and evaluation the test UAR, then the mean ± standard deviation over the runs and
the UAR pooled over all their test utterances, each with a 95 % bootstrap interval (utterances resampled; the mean's
interval resamples every run independently), as JSON and as one Markdown table."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from exhubert_jax.evaluation import bootstrap as bs, metrics

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


def pooled_uar(results: Sequence[Mapping[str, Any]]) -> float:
    """UAR over the test utterances of all runs together, classes matched by name."""
    y_true, y_pred, k = _pooled(results)
    return metrics.uar(y_true, y_pred, k)


def run_interval(result: Mapping[str, Any], name: str, n: int = RESAMPLES) -> tuple[list[float], np.ndarray]:
    """(95 % interval of one run's test UAR, its resampled UARs): an utterance bootstrap."""
    info, uars = bs.intervals(result["targets"], result["preds"], len(result["class_names"]), None, n, SEED, name)
    return info["uar"], uars


def summarize(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{column: {mean, sd, mean_interval, pooled, pooled_interval, runs_intervals, n_runs, n}} over the runs that
    have that evaluation."""
    out = {}
    for col in columns:
        named = [(r["run"], r["evaluations"][col]) for r in runs if col in r["evaluations"]]
        results = [res for _, res in named]
        mean, sd = mean_sd([r["uar"] for r in results])
        per_run = [run_interval(res, f"{name}/{col}") for name, res in named]
        y_true, y_pred, k = _pooled(results)
        pooled_info, _ = bs.intervals(y_true, y_pred, k, None, RESAMPLES, SEED, f"pooled/{col}")
        out[col] = {"mean": mean, "sd": sd, "mean_interval": bs.mean_interval([u for _, u in per_run]),
                    "pooled": pooled_uar(results), "pooled_interval": pooled_info["uar"],
                    "runs_intervals": {name: iv for (name, _), (iv, _) in zip(named, per_run)},
                    "n_runs": len(results), "n": sum(len(r["targets"]) for r in results)}
    return out


_UNSEEN = {True: "yes", False: "no", None: "unknown"}  # test speakers disjoint from the corpus's train speakers


def _pct(v: float | None) -> str:
    """A UAR in % with one decimal; n/a for None or NaN."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _iv(interval: Sequence[float] | None) -> str:
    """' [low, high]' in %, or nothing."""
    return f" [{_pct(interval[0])}, {_pct(interval[1])}]" if interval else ""


def table(runs: Sequence[Mapping[str, Any]], columns: Sequence[str], summary: Mapping[str, Mapping[str, Any]],
          what: str) -> str:
    """Markdown: a row per run (whether its test speakers are unseen in the test corpus's own train and validation
    splits, test utterances, UAR per evaluation with its 95 % interval), then mean ± sd and the pooled UAR, in %,
    with their intervals."""
    head = [f"| {what} | test corpus | test speakers unseen | n | " + " | ".join(f"{c} UAR" for c in columns) + " |",
            "|---|---|---|---:|" + "---:|" * len(columns)]
    rows = []
    for r in runs:
        first = next(iter(r["evaluations"].values()))
        cells = [_pct(r["evaluations"][c]["uar"]) + _iv(summary[c]["runs_intervals"].get(r["run"]))
                 if c in r["evaluations"] else "" for c in columns]
        unseen = _UNSEEN[r.get("test_speakers_disjoint")]
        rows.append(f"| {r['run']} | {r['corpus']} | {unseen} | {len(first['targets'])} | " + " | ".join(cells) + " |")
    n = summary[columns[0]]["n"]
    means = [f"{_pct(summary[c]['mean'])} ± {_pct(summary[c]['sd'])}{_iv(summary[c]['mean_interval'])}"
             for c in columns]
    pooled = [_pct(summary[c]["pooled"]) + _iv(summary[c]["pooled_interval"]) for c in columns]
    rows.append(f"| mean ± sd ({len(runs)} runs) | | | | " + " | ".join(means) + " |")
    rows.append(f"| pooled over all test utterances | | | {n} | " + " | ".join(pooled) + " |")
    return "\n".join(head + rows)
