"""Classification metrics for speech emotion recognition, in plain numpy.

Conventions (all match scikit-learn, which the tests check):

- ``confusion_matrix``: rows are true classes, columns predicted classes; with ``weights`` each utterance counts
  its weight (padding rows carry weight 0 and vanish).
- ``uar`` (unweighted average recall, the paper's metric): the mean of the per-class recalls over the classes that
  occur in ``y_true`` (with positive total weight). Classes absent from the test set are left out rather than
  counted as 0. This equals ``sklearn.metrics.balanced_accuracy_score`` and
  ``recall_score(average="macro", labels=<classes present in y_true>)``.
- ``weighted_accuracy`` ("WA" in the SER literature) is plain accuracy, i.e. recall weighted by class frequency;
  it is *not* sklearn's ``balanced_accuracy``.
- ``macro_f1``: mean F1 over the classes that occur in ``y_true`` or ``y_pred``, as
  ``sklearn.metrics.f1_score(average="macro")`` with its default labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_arrays(y_true, y_pred, weights):
    """Validated int label arrays and float weights (ones when None)."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} entries but y_pred has {y_pred.size}")
    w = np.ones(y_true.shape, np.float64) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != y_true.shape:
        raise ValueError(f"weights has {w.size} entries but y_true has {y_true.size}")
    return y_true, y_pred, w


def confusion_matrix(y_true, y_pred, num_classes: int, weights=None) -> np.ndarray:
    """(num_classes, num_classes) matrix, rows = true class, columns = predicted class (weighted counts)."""
    y_true, y_pred, w = _as_arrays(y_true, y_pred, weights)
    keep = w != 0
    y_true, y_pred, w = y_true[keep], y_pred[keep], w[keep]
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(cm, (y_true, y_pred), w)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each true class from a confusion matrix; NaN for classes with no (weighted) support."""
    cm = np.asarray(cm, np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1.0), np.nan)


def uar(y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """Unweighted average recall: mean recall over the classes present in y_true (sklearn balanced accuracy)."""
    cm = confusion_matrix(y_true, y_pred, _num_classes(y_true, y_pred, num_classes), weights)
    return _uar_from_cm(cm)


def weighted_accuracy(y_true, y_pred, weights=None) -> float:
    """Weighted accuracy ("WA" in SER papers) = plain accuracy, the class-frequency-weighted recall."""
    cm = confusion_matrix(y_true, y_pred, max(_num_classes(y_true, y_pred, None), 1), weights)
    return _wa_from_cm(cm)


def macro_f1(y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """Macro F1 over the classes present in y_true or y_pred (sklearn f1_score(average="macro"))."""
    cm = confusion_matrix(y_true, y_pred, _num_classes(y_true, y_pred, num_classes), weights)
    return _macro_f1_from_cm(cm)


def summarize(y_true, y_pred, num_classes: int, class_names: Sequence[str] | None = None,
              weights=None) -> dict:
    """All metrics as a JSON-ready dict: uar, wa, macro_f1, per-class recall/support, confusion matrix."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    cm = confusion_matrix(y_true, y_pred, num_classes, weights)
    recall = per_class_recall(cm)
    return {
        "n": _number(cm.sum()),
        "uar": _uar_from_cm(cm),
        "wa": _wa_from_cm(cm),
        "macro_f1": _macro_f1_from_cm(cm),
        "class_names": names,
        "per_class_recall": {n: (None if np.isnan(r) else float(r)) for n, r in zip(names, recall)},
        "support": {n: _number(s) for n, s in zip(names, cm.sum(axis=1))},
        "confusion_matrix": [[_number(v) for v in row] for row in cm],
    }


def _num_classes(y_true, y_pred, num_classes: int | None) -> int:
    """num_classes, or 1 + the largest label seen."""
    if num_classes is not None:
        return int(num_classes)
    labels = np.concatenate([np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)])
    return int(labels.max()) + 1 if labels.size else 0


def _wa_from_cm(cm: np.ndarray) -> float:
    """Accuracy from a confusion matrix (NaN when it is empty)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def _uar_from_cm(cm: np.ndarray) -> float:
    """Mean of the defined per-class recalls (NaN when no class has support)."""
    recall = per_class_recall(cm)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else float("nan")


def _macro_f1_from_cm(cm: np.ndarray) -> float:
    """Mean F1 = 2tp / (2tp + fp + fn) over classes that are true or predicted at least once."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2tp + fp + fn
    used = denom > 0
    return float(np.mean(2 * tp[used] / denom[used])) if used.any() else float("nan")


def _number(v: float) -> int | float:
    """An int when the (weighted) count is whole, else a float (keeps JSON tidy)."""
    return int(v) if float(v).is_integer() else float(v)
