"""Bootstrap intervals and paired tests for every registered metric (metrics.METRICS: UAR, WA, macro-F1, kappa, ...),
vectorised over resamples on confusion matrices.

A test set is reduced to *units*, each with a per-run confusion matrix and a count:

- cluster bootstrap (speakers known): one unit per speaker, count 1, its utterances' confusion matrix. Utterances of
  one speaker are dependent (voice, microphone, recording conditions), so a speaker-independent test set is resampled by speaker
  (Field & Welsh 2007, "Bootstrapping clustered data").
- utterance bootstrap: one unit per distinct (true, predicted by each run) cell, counted by its utterances and
  holding a one-hot matrix. Drawing n utterances with replacement is drawing these cells from a multinomial with
  probabilities count / n, so no per-utterance work is done.

A resample is then a multinomial draw of unit multiplicities W (B, U), and its confusion matrices are W @ unit
matrices: a few matrix products for any test-set size. Every registered metric is then a function of those
(B, ..., k, k) matrices (Metric.of_confusions), so one draw gives the intervals of all of them.
"""

from __future__ import annotations

import warnings
import zlib
from typing import NamedTuple, Sequence

import numpy as np

from exhubert_jax.evaluation import metrics
from exhubert_jax.evaluation.metrics import METRICS  # the registry: every interval iterates it

MIN_CLUSTERS = 5  # below this a cluster bootstrap has too few distinct resamples (35 for 4 speakers) for an interval
LEVEL = 0.95


class Units(NamedTuple):
    """Resampling units of a test set scored by R runs."""

    cms: np.ndarray  # (U, R, k, k) confusion matrix of one draw of each unit, per run
    counts: np.ndarray  # (U,) utterances of a cell (utterance bootstrap) or 1 per speaker (cluster bootstrap)
    method: str  # "cluster" or "utterance"
    n_clusters: int | None  # distinct speakers when every utterance has one, else None


def make_units(y_true, preds, num_classes: int, speakers: Sequence | None = None) -> Units:
    """Units for `preds` (R, n) or (n,) against y_true (n,): by speaker when every utterance has one and there are
    at least MIN_CLUSTERS of them, else by utterance (n_clusters still counts the speakers when they are known)."""
    y = np.asarray(y_true, np.int64).reshape(-1)
    p = np.atleast_2d(np.asarray(preds, np.int64))
    if p.shape[1] != y.size:
        raise ValueError(f"{p.shape[1]} predictions for {y.size} labels")
    k, runs = int(num_classes), p.shape[0]
    n_speakers = None
    if speakers is not None and len(speakers) == y.size and all(s is not None for s in speakers):
        names, group = np.unique(np.asarray([str(s) for s in speakers]), return_inverse=True)
        n_speakers = len(names)
        if n_speakers >= MIN_CLUSTERS:
            cms = np.zeros((n_speakers, runs, k, k))
            for r in range(runs):
                np.add.at(cms, (group, r, y, p[r]), 1.0)
            return Units(cms, np.ones(n_speakers), "cluster", n_speakers)
    cells, counts = np.unique(np.vstack([y, p]), axis=1, return_counts=True)
    cms = np.zeros((cells.shape[1], runs, k, k))
    u = np.arange(cells.shape[1])
    for r in range(runs):
        cms[u, r, cells[0], cells[r + 1]] = 1.0
    return Units(cms, counts.astype(np.float64), "utterance", n_speakers)


def observed(units: Units) -> np.ndarray:
    """(R, k, k) confusion matrices of the test set itself."""
    return _combine(units.counts[None], units.cms)[0]


def resample(units: Units, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, R, k, k) confusion matrices of B bootstrap resamples (the same resample for every run: paired)."""
    total, n_units = int(units.counts.sum()), len(units.counts)
    if units.method == "cluster":  # equal probabilities: G draws of a speaker index per resample, then counted
        draws = rng.integers(0, n_units, size=(n_resamples, n_units)) + n_units * np.arange(n_resamples)[:, None]
        weights = np.bincount(draws.ravel(), minlength=n_resamples * n_units).reshape(n_resamples, n_units)
    else:
        weights = rng.multinomial(total, units.counts / total, size=n_resamples)
    return _combine(weights, units.cms)


def _combine(weights: np.ndarray, cms: np.ndarray) -> np.ndarray:
    """(B, R, k, k) = weights (B, U) times unit matrices (U, R, k, k), as one matrix product. Both hold whole
    counts, so the product is taken in int64: exact, and free of BLAS threads, which cost more than the work for
    products this small."""
    out = np.asarray(weights, np.int64) @ np.asarray(cms, np.int64).reshape(len(cms), -1)
    return out.reshape(len(weights), *cms.shape[1:]).astype(np.float64)


def swap(units: Units, n_rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(B, 2, k, k) confusion matrices of an approximate randomisation test: each utterance (or each speaker, for
    clusters) has its two runs' predictions exchanged with probability 1/2. For cells, how many of a cell's
    utterances are exchanged is Binomial(count, 1/2)."""
    if units.cms.shape[1] != 2:
        raise ValueError(f"a randomisation test compares 2 runs, got {units.cms.shape[1]}")
    moved = rng.binomial(units.counts.astype(np.int64), 0.5, size=(n_rounds, len(units.counts)))
    delta = _combine(moved, units.cms[:, 1:] - units.cms[:, :1])[:, 0]
    base = observed(units)
    return np.stack([base[0] + delta, base[1] - delta], axis=1)


# ------------------------------------------------------------------------------------------------------------------
# Metrics over stacks of confusion matrices: the registry's own functions (metrics.METRICS), which take (..., k, k)
# ------------------------------------------------------------------------------------------------------------------

uar_many = metrics.uar_of_confusions
wa_many = metrics.wa_of_confusions
macro_f1_many = metrics.macro_f1_of_confusions
kappa_many = metrics.kappa_of_confusions


def of_every_metric(cms: np.ndarray) -> dict[str, np.ndarray]:
    """{name: the metric of each (..., k, k) matrix} for every registered metric, in registry order."""
    return {name: np.asarray(m.of_confusions(cms), np.float64) for name, m in METRICS.items()}


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """[low, high] percentile interval of the defined samples; None when no sample is defined (a metric undefined in
    every resample, e.g. kappa on a test set of one class predicted as that class)."""
    samples = np.asarray(samples, np.float64)
    if not np.isfinite(samples).any():
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by `seed` and names (e.g. the corpus), so adding a corpus leaves the others' draws alone."""
    return np.random.default_rng([int(seed), *(zlib.crc32(n.encode()) for n in names)])


def method_label(units: Units) -> str:
    """How the interval was computed, for JSON and the legend under a table."""
    if units.method == "cluster":
        return f"cluster bootstrap over {units.n_clusters} speakers"
    if units.n_clusters:
        return (f"utterance bootstrap (only {units.n_clusters} speaker{'s' * (units.n_clusters > 1)}, fewer than "
                f"{MIN_CLUSTERS} to resample; utterances of one speaker are dependent, so the interval is too narrow)")
    return "utterance bootstrap (speakers unknown)"


def short_label(units_method: str, n_clusters: int | None) -> str:
    """The table cell naming the method: 'speakers (30)', 'utterances', 'utterances (1 speaker)'."""
    if units_method == "cluster":
        return f"speakers ({n_clusters})"
    return f"utterances ({n_clusters} speaker{'s' * (n_clusters > 1)})" if n_clusters else "utterances"


def resampled(y_true, y_pred, num_classes: int, speakers: Sequence | None, n_resamples: int, seed: int,
              name: str = "", level: float = LEVEL) -> tuple[dict, dict[str, np.ndarray]]:
    """({method, unit, n_speakers, short, resamples, seed, level, and per registered metric (uar, wa, macro_f1,
    kappa, ...) its [low, high] or None}, {metric: its (B,) resampled values}) for one test set; the generator is
    seeded by seed and name, so the result is deterministic (and the same resamples serve every metric)."""
    units = make_units(y_true, y_pred, num_classes, speakers)
    samples = of_every_metric(resample(units, n_resamples, rng_for(seed, name))[:, 0])
    out = {"method": method_label(units), "unit": units.method, "n_speakers": units.n_clusters,
           "short": short_label(units.method, units.n_clusters), "resamples": int(n_resamples),
           "seed": int(seed), "level": level}
    out.update({k: percentile_interval(v, level) for k, v in samples.items()})
    return out, samples


def intervals(y_true, y_pred, num_classes: int, speakers: Sequence | None, n_resamples: int, seed: int,
              name: str = "", level: float = LEVEL) -> tuple[dict, np.ndarray]:
    """(resampled's dict of intervals, the (B,) resampled UARs) for one test set."""
    out, samples = resampled(y_true, y_pred, num_classes, speakers, n_resamples, seed, name, level)
    return out, samples["uar"]


def mean_interval(samples: Sequence[np.ndarray], level: float = LEVEL) -> list[float] | None:
    """Interval of the unweighted mean over corpora, each corpus resampled independently: the b-th resample of the
    mean is the mean of the corpora's b-th resamples (corpora undefined in a resample are left out); None when no
    resample has a defined mean."""
    stacked = np.vstack([np.asarray(s, np.float64) for s in samples])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: that resample's mean is NaN
        means = np.nanmean(stacked, axis=0)
    return percentile_interval(means, level)
