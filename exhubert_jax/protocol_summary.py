"""A protocol's summary: per run and evaluation the test UAR, then the mean ± standard deviation over the runs and
the UAR pooled over all their test utterances, as JSON and as one Markdown table."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from . import metrics


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), (float(x.std(ddof=1)) if x.size > 1 else None)


def pooled_uar(results: Sequence[Mapping[str, Any]]) -> float:
    """UAR over the test utterances of all runs together, classes matched by name (folds may differ in which of
    a corpus's native labels they hold)."""
    names = sorted({n for r in results for n in r["class_names"]})
    index = {n: i for i, n in enumerate(names)}
    y_true = [index[r["class_names"][t]] for r in results for t in r["targets"]]
    y_pred = [index[r["class_names"][p]] for r in results for p in r["preds"]]
    return metrics.uar(y_true, y_pred, len(names))


def summarize(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{column: {mean, sd, pooled, n_runs, n}} over the runs that have that evaluation."""
    out = {}
    for col in columns:
        results = [r["evaluations"][col] for r in runs if col in r["evaluations"]]
        mean, sd = mean_sd([r["uar"] for r in results])
        out[col] = {"mean": mean, "sd": sd, "pooled": pooled_uar(results), "n_runs": len(results),
                    "n": sum(len(r["targets"]) for r in results)}
    return out


_UNSEEN = {True: "yes", False: "no", None: "unknown"}  # test speakers disjoint from the corpus's train speakers


def _pct(v: float | None) -> str:
    """A UAR in % with one decimal; n/a for None or NaN."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def table(runs: Sequence[Mapping[str, Any]], columns: Sequence[str], summary: Mapping[str, Mapping[str, Any]],
          what: str) -> str:
    """Markdown: a row per run (whether its test speakers are unseen in the test corpus's own train and validation
    splits, test utterances, UAR per evaluation), then mean ± sd and the pooled UAR, in %."""
    head = [f"| {what} | test corpus | test speakers unseen | n | " + " | ".join(f"{c} UAR" for c in columns) + " |",
            "|---|---|---|---:|" + "---:|" * len(columns)]
    rows = []
    for r in runs:
        first = next(iter(r["evaluations"].values()))
        cells = [_pct(r["evaluations"][c]["uar"]) if c in r["evaluations"] else "" for c in columns]
        unseen = _UNSEEN[r.get("test_speakers_disjoint")]
        rows.append(f"| {r['run']} | {r['corpus']} | {unseen} | {len(first['targets'])} | " + " | ".join(cells) + " |")
    n = summary[columns[0]]["n"]
    means = [f"{_pct(summary[c]['mean'])} ± {_pct(summary[c]['sd'])}" for c in columns]
    pooled = [_pct(summary[c]["pooled"]) for c in columns]
    rows.append(f"| mean ± sd ({len(runs)} runs) | | | | " + " | ".join(means) + " |")
    rows.append(f"| pooled over all test utterances | | | {n} | " + " | ".join(pooled) + " |")
    return "\n".join(head + rows)
