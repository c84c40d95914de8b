"""Classification metrics for speech emotion recognition, in plain numpy, declared once in a registry.

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
- ``kappa`` (Cohen's kappa): (p_o - p_e) / (1 - p_e), p_o the accuracy and p_e the agreement expected from the
  true and predicted class frequencies, as ``sklearn.metrics.cohen_kappa_score``. It is undefined (NaN, shown as
  '–' in the tables and left out of averages, as sklearn's default) when p_e = 1: every utterance is of one class
  and every prediction is that class, so there is no agreement beyond chance to measure.

Every metric is a function of the confusion matrix, declared once in the registry ``METRICS`` (name -> Metric, in
order; UAR first): ``Metric.of_confusions`` takes confusion matrices of shape (..., C, C) and returns the metric of
each, over the leading axes, so the same function gives the point value of a test set ((C, C) -> a scalar) and its
bootstrap (a stack of resampled matrices, bootstrap.py). Every output iterates ``METRICS``: ``summarize`` (the
per-corpus results, results.json), the bootstrap intervals, the Markdown tables, the Table-2 comparison and its
paired tests, the protocol summary and the evaluation index. ``register(Metric(...))`` adds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One classification metric. `of_confusions` maps confusion matrices (..., C, C) (rows = true class, columns =
    predicted) to the metric (...), NaN where it is undefined; `label` heads table columns; `percent` says whether
    the tables show it in % (a fraction, like UAR) or as it is with 3 decimals (like kappa); `undefined` says
    when it is NaN on a non-empty test set, for the note under a table."""

    name: str
    label: str
    of_confusions: Callable[[np.ndarray], np.ndarray]
    percent: bool = True
    description: str = ""
    undefined: str = ""  # when it is NaN, for the note under a table ('when ...'); empty: not worth a note

    def value(self, cm) -> float:
        """The metric of one (C, C) confusion matrix, as a float (NaN when undefined)."""
        return float(self.of_confusions(np.asarray(cm, np.float64)))

    @property
    def heading(self) -> str:
        """The table column title: 'UAR (%)', 'Kappa'."""
        return f"{self.label} (%)" if self.percent else self.label


METRICS: dict[str, Metric] = {}  # name -> Metric, in registration order: what every output iterates


def register(metric: Metric) -> Metric:
    """Add a metric to METRICS (after the others); ValueError when its name is taken or is not a plain key."""
    if metric.name in METRICS:
        raise ValueError(f"a metric named {metric.name!r} is already registered")
    if not metric.name.isidentifier():
        raise ValueError(f"metric name {metric.name!r} must be an identifier (it is a results.json key)")
    METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> Metric:
    """Remove a registered metric (tests that register their own); KeyError when there is none of that name."""
    return METRICS.pop(name)


def all_of(cm) -> dict[str, float]:
    """{name: value} of every registered metric on one (C, C) confusion matrix, in registry order."""
    cm = np.asarray(cm, np.float64)
    return {m.name: m.value(cm) for m in METRICS.values()}


# ------------------------------------------------------------------------------------------------------------------
# The metrics, on confusion matrices (..., C, C)
# ------------------------------------------------------------------------------------------------------------------


def _divide(num: np.ndarray, den: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """num / den where `defined`, NaN elsewhere, without warnings."""
    return np.where(defined, num / np.where(defined, den, 1.0), np.nan)


def uar_of_confusions(cms: np.ndarray) -> np.ndarray:
    """UAR of each (..., C, C) matrix: mean recall over the classes with support (NaN when none has)."""
    cms = np.asarray(cms, np.float64)
    support = cms.sum(axis=-1)
    present = support > 0
    recall = np.where(present, np.diagonal(cms, axis1=-2, axis2=-1) / np.where(present, support, 1.0), 0.0)
    n = present.sum(axis=-1)
    return _divide(recall.sum(axis=-1), n, n > 0)


def wa_of_confusions(cms: np.ndarray) -> np.ndarray:
    """Accuracy (WA) of each (..., C, C) matrix (NaN when it is empty)."""
    cms = np.asarray(cms, np.float64)
    total = cms.sum(axis=(-2, -1))
    return _divide(np.trace(cms, axis1=-2, axis2=-1), total, total > 0)


def macro_f1_of_confusions(cms: np.ndarray) -> np.ndarray:
    """Mean F1 = 2tp / (2tp + fp + fn) of each (..., C, C) matrix over the classes true or predicted at least once."""
    cms = np.asarray(cms, np.float64)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    denom = cms.sum(axis=-1) + cms.sum(axis=-2)  # = 2tp + fp + fn
    used = denom > 0
    f1 = np.where(used, 2 * tp / np.where(used, denom, 1.0), 0.0)
    n = used.sum(axis=-1)
    return _divide(f1.sum(axis=-1), n, n > 0)


def kappa_of_confusions(cms: np.ndarray) -> np.ndarray:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) of each (..., C, C) matrix, as (N tr - S) / (N^2 - S) with N the
    total and S the sum over classes of true count times predicted count; NaN when p_e = 1 (N^2 = S: one class
    only, truth and predictions alike) or the matrix is empty."""
    cms = np.asarray(cms, np.float64)
    total = cms.sum(axis=(-2, -1))
    chance = (cms.sum(axis=-1) * cms.sum(axis=-2)).sum(axis=-1)
    denom = total ** 2 - chance
    return _divide(total * np.trace(cms, axis1=-2, axis2=-1) - chance, denom, denom > 0)


register(Metric("uar", "UAR", uar_of_confusions,
                description="unweighted average recall over the classes present in the test set"))
register(Metric("wa", "WA", wa_of_confusions, description="weighted accuracy: plain accuracy"))
register(Metric("macro_f1", "Macro-F1", macro_f1_of_confusions,
                description="mean F1 over the classes true or predicted at least once"))
register(Metric("kappa", "Kappa", kappa_of_confusions, percent=False,
                description="Cohen's kappa: agreement beyond chance",
                undefined="when every utterance is of one class and every prediction is that class"))


# ------------------------------------------------------------------------------------------------------------------
# Labels and predictions
# ------------------------------------------------------------------------------------------------------------------


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
    return _divide(np.diag(cm), support, support > 0)


def metric_of(name: str, y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """The registered metric `name` of labels and predictions (num_classes: 1 + the largest label seen)."""
    cm = confusion_matrix(y_true, y_pred, _num_classes(y_true, y_pred, num_classes), weights)
    return METRICS[name].value(cm)


def uar(y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """Unweighted average recall: mean recall over the classes present in y_true (sklearn balanced accuracy)."""
    return metric_of("uar", y_true, y_pred, num_classes, weights)


def weighted_accuracy(y_true, y_pred, weights=None) -> float:
    """Weighted accuracy ("WA" in SER papers) = plain accuracy, the class-frequency-weighted recall."""
    return metric_of("wa", y_true, y_pred, max(_num_classes(y_true, y_pred, None), 1), weights)


def macro_f1(y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """Macro F1 over the classes present in y_true or y_pred (sklearn f1_score(average="macro"))."""
    return metric_of("macro_f1", y_true, y_pred, num_classes, weights)


def kappa(y_true, y_pred, num_classes: int | None = None, weights=None) -> float:
    """Cohen's kappa (sklearn cohen_kappa_score); NaN when every label and prediction is one class."""
    return metric_of("kappa", y_true, y_pred, num_classes, weights)


def summarize(y_true, y_pred, num_classes: int, class_names: Sequence[str] | None = None,
              weights=None) -> dict:
    """A JSON-ready dict: n, every registered metric by name (uar, wa, macro_f1, kappa, ...), class names,
    per-class recall/support and the confusion matrix."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    cm = confusion_matrix(y_true, y_pred, num_classes, weights)
    recall = per_class_recall(cm)
    return {
        "n": _number(cm.sum()),
        **all_of(cm),
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
    return METRICS["wa"].value(cm)


def _uar_from_cm(cm: np.ndarray) -> float:
    """Mean of the defined per-class recalls (NaN when no class has support)."""
    return METRICS["uar"].value(cm)


def _macro_f1_from_cm(cm: np.ndarray) -> float:
    """Mean F1 = 2tp / (2tp + fp + fn) over classes that are true or predicted at least once."""
    return METRICS["macro_f1"].value(cm)


def _number(v: float) -> int | float:
    """An int when the (weighted) count is whole, else a float (keeps JSON tidy)."""
    return int(v) if float(v).is_integer() else float(v)
