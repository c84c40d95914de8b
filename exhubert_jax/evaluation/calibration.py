"""Calibration of a classifier's probabilities: ECE and MCE over 15 equal-width confidence bins, NLL and Brier score
(Guo et al. 2017, "On calibration of modern neural networks"), and temperature scaling fitted on validation data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

BINS = 15


def probabilities(logits, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over the last axis, float64."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1))


def reliability(probs, y_true, bins: int = BINS) -> dict:
    """Per confidence bin (b/bins, (b+1)/bins]: count, accuracy and mean confidence of the top-class predictions
    (NaN for empty bins); the confidence is the largest probability."""
    probs, y = np.asarray(probs, np.float64), np.asarray(y_true, np.int64)
    conf, correct = probs.max(axis=-1), (probs.argmax(axis=-1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, correct, minlength=bins) / counts
        confidence = np.bincount(which, conf, minlength=bins) / counts
    return {"edges": edges, "counts": counts, "accuracy": accuracy, "confidence": confidence}


def ece_mce(probs, y_true, bins: int = BINS) -> tuple[float, float]:
    """(expected calibration error, maximum calibration error): the count-weighted mean and the largest
    |accuracy - confidence| over the non-empty bins."""
    r = reliability(probs, y_true, bins)
    used = r["counts"] > 0
    if not used.any():
        return float("nan"), float("nan")
    gap = np.abs(r["accuracy"][used] - r["confidence"][used])
    return float(np.sum(r["counts"][used] * gap) / r["counts"].sum()), float(gap.max())


def nll(logits, y_true, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / temperature)."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1)
    return float(-np.mean(logp[np.arange(len(logp)), np.asarray(y_true, np.int64)]))


def brier(probs, y_true) -> float:
    """Multi-class Brier score: mean over utterances of sum_c (p_c - [c = y])^2 (0 best, 2 worst)."""
    probs = np.asarray(probs, np.float64)
    onehot = np.eye(probs.shape[-1])[np.asarray(y_true, np.int64)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


def summary(logits, y_true, temperature: float = 1.0, bins: int = BINS) -> dict:
    """{temperature, ece, mce, nll, brier} of one test set (NaNs when it is empty)."""
    logits = np.asarray(logits, np.float64)
    if len(logits) == 0:
        return {"temperature": temperature, **dict.fromkeys(("ece", "mce", "nll", "brier"), float("nan"))}
    probs = probabilities(logits, temperature)
    ece, mce = ece_mce(probs, y_true, bins)
    return {"temperature": float(temperature), "ece": ece, "mce": mce, "nll": nll(logits, y_true, temperature),
            "brier": brier(probs, y_true)}


def fit_temperature(logits, y_true) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (one scalar, so the argmax is unchanged).
    The NLL is convex in 1/T, hence unimodal in log T, where a bounded Brent search finds its minimum."""
    logits, y = np.asarray(logits, np.float64), np.asarray(y_true, np.int64)
    if len(logits) == 0:
        raise ValueError("no utterances to fit a temperature on")
    best = minimize_scalar(lambda log_t: nll(logits, y, np.exp(log_t)), bounds=(np.log(1e-2), np.log(1e2)),
                           method="bounded", options={"xatol": 1e-6})
    return float(np.exp(best.x))


# ------------------------------------------------------------------------------------------------------------------
# temperature.json, stored with the checkpoint
# ------------------------------------------------------------------------------------------------------------------

TEMPERATURE_JSON = "temperature.json"


def weights_stamp(checkpoint: str | Path) -> str:
    """A hash of config.json and the names, sizes and modification times of the files under params/: it changes
    whenever the checkpoint is written again, so a temperature fitted for older weights is not applied to new ones."""
    root = Path(checkpoint)
    h = hashlib.sha256((root / "config.json").read_bytes() if (root / "config.json").is_file() else b"")
    for f in sorted(p for p in (root / "params").rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def save_temperature(checkpoint: str | Path, temperature: float, fitted_on: dict[str, int], nll_before: float,
                     nll_after: float) -> Path:
    """Write CHECKPOINT/temperature.json (atomically): the temperature, what it was fitted on, the weights stamp."""
    path = Path(checkpoint) / TEMPERATURE_JSON
    doc = {"temperature": temperature, "split": "validation", "fitted_on": fitted_on,
           "validation_nll": {"before": nll_before, "after": nll_after}, "weights": weights_stamp(checkpoint)}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)
    return path


def load_temperature(checkpoint: str | Path) -> tuple[dict | None, str | None]:
    """(temperature.json's document, None) when it applies to this checkpoint; (None, why not) when the file is
    unreadable or was fitted for other weights; (None, None) when there is none."""
    path = Path(checkpoint) / TEMPERATURE_JSON
    if not path.is_file():
        return None, None
    try:
        doc = json.loads(path.read_text())
        temperature = float(doc["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{path} is unreadable ({type(e).__name__}); ignored: run evaluate.py --calibrate again"
    if not temperature > 0:
        return None, f"{path} holds temperature {temperature}, not a positive number; ignored"
    if doc.get("weights") != weights_stamp(checkpoint):
        return None, (f"{path} was fitted for an earlier version of these weights (the checkpoint was written "
                      "again since); ignored: run evaluate.py --calibrate again")
    return doc, None
