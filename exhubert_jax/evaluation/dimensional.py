"""Continuous emotion (arousal, valence, dominance): CCC, Pearson's r and MAE in numpy; the 1 - CCC and MSE losses
in JAX, masked per row and dimension, so one compiled step serves corpora with and without dimensional labels.

CCC (Lin 1989) is 2 cov(x, y) / (var x + var y + (mean x - mean y)^2) with population (1/n) moments, as in
audeering's and the MSP-Podcast challenge's evaluation code.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from exhubert_jax.data.sources import dimensions as _rules

DIMENSIONS = _rules.DIMENSIONS  # the canonical order of the regression outputs
LOSSES = ("ccc", "mse")
_EPS = 1e-8  # keeps the CCC of a constant batch finite


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Float64 1-D arrays of equal length."""
    t = np.asarray(y_true, np.float64).reshape(-1)
    p = np.asarray(y_pred, np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    return t, p


def ccc(y_true, y_pred) -> float:
    """Concordance correlation coefficient of two 1-D arrays (NaN for fewer than 2 values or zero spread)."""
    t, p = _pair(y_true, y_pred)
    if t.size < 2:
        return float("nan")
    denom = t.var() + p.var() + (t.mean() - p.mean()) ** 2
    return float(2 * np.mean((t - t.mean()) * (p - p.mean())) / denom) if denom > 0 else float("nan")


def pearson(y_true, y_pred) -> float:
    """Pearson's r (NaN for fewer than 2 values or a constant array)."""
    t, p = _pair(y_true, y_pred)
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return float("nan")
    return float(np.mean((t - t.mean()) * (p - p.mean())) / (t.std() * p.std()))


def mae(y_true, y_pred) -> float:
    """Mean absolute error (NaN when empty)."""
    t, p = _pair(y_true, y_pred)
    return float(np.abs(t - p).mean()) if t.size else float("nan")


def summarize_dims(y_true: np.ndarray, y_pred: np.ndarray, names: tuple[str, ...]) -> dict:
    """{'n', 'dims': {name: {ccc, r, mae, n}}, 'mean_ccc'} over the rows where a dimension's target is finite."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    dims = {}
    for k, name in enumerate(names):
        known = np.isfinite(y_true[:, k])
        t, p = y_true[known, k], y_pred[known, k]
        dims[name] = dict(n=int(known.sum()), ccc=ccc(t, p), r=pearson(t, p), mae=mae(t, p))
    cccs = [d["ccc"] for d in dims.values() if np.isfinite(d["ccc"])]
    return dict(n=int(len(y_true)), dims=dims, mean_ccc=float(np.mean(cccs)) if cccs else float("nan"))


def masked_ccc(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """CCC per column of (B, K) predictions over the rows where mask (B, K) is 1."""
    n = jnp.maximum(mask.sum(0), 1.0)
    mp, mt = (mask * pred).sum(0) / n, (mask * target).sum(0) / n
    dp, dt = mask * (pred - mp), mask * (target - mt)
    cov = (dp * dt).sum(0) / n
    denom = (dp * dp).sum(0) / n + (dt * dt).sum(0) / n + (mp - mt) ** 2
    return 2 * cov / (denom + _EPS)


def dimensional_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, kind: str = "ccc") -> jax.Array:
    """1 - CCC (or the MSE) averaged over the dimensions that have at least one labelled row; 0 when none has.
    Missing targets (mask 0) may hold any finite value."""
    pred = pred.astype(jnp.promote_types(pred.dtype, jnp.float32))
    mask = mask.astype(pred.dtype)
    target = jnp.where(mask > 0, target, 0.0).astype(pred.dtype)
    labelled = (mask.sum(0) > 0).astype(pred.dtype)
    if kind == "ccc":
        per_dim = 1.0 - masked_ccc(pred, target, mask)
    elif kind == "mse":
        per_dim = (mask * (pred - target) ** 2).sum(0) / jnp.maximum(mask.sum(0), 1.0)
    else:
        raise ValueError(f"dimensional loss must be one of {LOSSES}, got {kind!r}")
    return (per_dim * labelled).sum() / jnp.maximum(labelled.sum(), 1.0)


# Onto the 6 classes: the thresholds live with the data rules (a manifest row without a label but with ratings
# gets its class from them), so they are part of every corpus's version digest.
AROUSAL_HIGH, VALENCE_BOUNDS, classes_from_dims = _rules.AROUSAL_HIGH, _rules.VALENCE_BOUNDS, _rules.classes_from_dims


def resample_weights(n: int, speakers, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, str, int | None]:
    """(B, n) bootstrap multiplicities of n utterances: whole speakers drawn with replacement when every utterance has
    one and there are at least bootstrap.MIN_CLUSTERS of them, else utterances; the unit and the speaker count."""
    from exhubert_jax.evaluation.bootstrap import MIN_CLUSTERS

    spk = list(speakers) if speakers is not None else [None] * n
    known = n > 0 and all(s is not None for s in spk)
    groups, index = np.unique(np.asarray(spk, object).astype(str), return_inverse=True) if known else ([], None)
    if known and len(groups) >= MIN_CLUSTERS:
        draws = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=n_resamples)
        return draws[:, index].astype(np.float64), "cluster", len(groups)
    draws = rng.multinomial(n, np.full(n, 1 / n), size=n_resamples).astype(np.float64)
    return draws, "utterance", (len(groups) if known else None)


def weighted_ccc(y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """CCC of one pair of (n,) arrays under each row of (B, n) weights (a resample's multiplicities)."""
    total = np.maximum(w.sum(1), 1e-12)
    mt, mp = (w @ y_true) / total, (w @ y_pred) / total
    vt = (w @ y_true ** 2) / total - mt ** 2
    vp = (w @ y_pred ** 2) / total - mp ** 2
    cov = (w @ (y_true * y_pred)) / total - mt * mp
    denom = vt + vp + (mt - mp) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * cov / denom, np.nan)


def ccc_intervals(y_true: np.ndarray, y_pred: np.ndarray, names: tuple[str, ...], speakers, n_resamples: int,
                  seed: int, name: str = "") -> tuple[dict, np.ndarray]:
    """({unit, short, resamples, seed, <dim>: [low, high] CCC, mean_ccc: [low, high]}, the (B,) resampled mean CCCs)
    of one test set, resampled like the categorical intervals (bootstrap.py): by speaker where it can be."""
    from exhubert_jax.evaluation.bootstrap import LEVEL, percentile_interval, rng_for, short_label

    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    w, unit, n_speakers = resample_weights(len(y_true), speakers, n_resamples, rng_for(seed, name, "ccc"))
    per_dim = []
    for k in range(len(names)):
        known = np.isfinite(y_true[:, k])
        per_dim.append(weighted_ccc(y_true[known, k], y_pred[known, k], w[:, known]))
    out = {"unit": unit, "n_speakers": n_speakers, "short": short_label(unit, n_speakers),
           "resamples": int(n_resamples), "seed": int(seed), "level": LEVEL}
    out.update({d: percentile_interval(c) for d, c in zip(names, per_dim)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no defined CCC: its mean is NaN
        means = np.nanmean(np.vstack(per_dim), axis=0) if per_dim else np.full(n_resamples, np.nan)
    out["mean_ccc"] = percentile_interval(means)
    return out, means
