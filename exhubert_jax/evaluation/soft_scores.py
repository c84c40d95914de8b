"""How a model's probabilities match the annotators' label distributions (soft labels): the soft-label cross-entropy
and the agreement 1 - total variation distance, over the utterances that have a distribution."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def soft_label_scores(logits: np.ndarray, dists: np.ndarray | None) -> dict | None:
    """Over the rows that have a label distribution p (a row of all 0 has none), with q = softmax(logits) at
    temperature 1: 'cross_entropy', the mean of -sum_c p_c log q_c (nats; the loss of --targets soft), 'agreement',
    the mean of 1 - TV(p, q) = 1 - 1/2 sum_c |p_c - q_c| (1: q is the annotators' distribution, 0: they share no
    class), and 'n'; None when no row has one."""
    if dists is None or not len(dists):
        return None
    p = np.asarray(dists, np.float64)
    has = p.sum(axis=-1) > 0
    if not has.any():
        return None
    p = p[has] / p[has].sum(axis=-1, keepdims=True)
    log_q = log_softmax(np.asarray(logits)[has])
    return {"n": int(has.sum()), "cross_entropy": float(np.mean(-(p * log_q).sum(axis=-1))),
            "agreement": float(np.mean(1.0 - 0.5 * np.abs(p - np.exp(log_q)).sum(axis=-1)))}
