"""The evaluation metrics against scikit-learn on random predictions."""

import numpy as np
import pytest
from sklearn import metrics as skm

from exhubert_jax.evaluation import metrics

C = 6


def _random_case(seed: int, n: int = 200, missing=(), weighted=False):
    """Random labels/predictions over C classes, optionally with classes missing from y_true and weights."""
    rng = np.random.default_rng(seed)
    allowed = [c for c in range(C) if c not in missing]
    y_true = rng.choice(allowed, size=n)
    # Predictions correlated with the truth so metrics are not all near chance.
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, C, n))
    w = rng.random(n) * 2 if weighted else None
    return y_true, y_pred, w


CASES = [dict(seed=s) for s in range(4)] + [
    dict(seed=10, missing=(2,)), dict(seed=11, missing=(0, 5)), dict(seed=12, weighted=True),
    dict(seed=13, missing=(3,), weighted=True), dict(seed=14, n=7),
]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_metrics_match_sklearn(case):
    y_true, y_pred, w = _random_case(**case)
    present = np.unique(y_true)
    expected_uar = skm.balanced_accuracy_score(y_true, y_pred, sample_weight=w)
    assert metrics.uar(y_true, y_pred, C, weights=w) == pytest.approx(expected_uar, abs=1e-12)
    assert metrics.uar(y_true, y_pred, C, weights=w) == pytest.approx(
        skm.recall_score(y_true, y_pred, average="macro", labels=present, sample_weight=w), abs=1e-12)
    assert metrics.weighted_accuracy(y_true, y_pred, weights=w) == pytest.approx(
        skm.accuracy_score(y_true, y_pred, sample_weight=w), abs=1e-12)
    assert metrics.macro_f1(y_true, y_pred, C, weights=w) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", sample_weight=w, zero_division=0), abs=1e-12)
    assert metrics.kappa(y_true, y_pred, C, weights=w) == pytest.approx(
        skm.cohen_kappa_score(y_true, y_pred, sample_weight=w), abs=1e-12)
    np.testing.assert_allclose(metrics.confusion_matrix(y_true, y_pred, C, weights=w),
                               skm.confusion_matrix(y_true, y_pred, labels=range(C), sample_weight=w))
    recall = metrics.per_class_recall(metrics.confusion_matrix(y_true, y_pred, C, weights=w))
    sk_recall = skm.recall_score(y_true, y_pred, average=None, labels=present, sample_weight=w)
    np.testing.assert_allclose(recall[present], sk_recall)
    assert np.isnan(recall[np.setdiff1d(np.arange(C), present)]).all()


def test_zero_weight_rows_are_ignored():
    y_true, y_pred, _ = _random_case(seed=3, n=50)
    # Padding rows (weight 0) with arbitrary labels must not change anything.
    pad_true, pad_pred = np.zeros(9, int), np.full(9, 5)
    w = np.concatenate([np.ones(50), np.zeros(9)])
    yt, yp = np.concatenate([y_true, pad_true]), np.concatenate([y_pred, pad_pred])
    plain = metrics.summarize(y_true, y_pred, C)
    padded = metrics.summarize(yt, yp, C, weights=w)
    assert padded == plain


def test_summarize_is_complete_and_json_ready():
    import json
    y_true = np.array([0, 0, 1, 1, 3])
    y_pred = np.array([0, 1, 1, 1, 5])
    names = ["a", "b", "c", "d", "e", "f"]
    s = metrics.summarize(y_true, y_pred, C, names)
    assert s["n"] == 5
    assert s["uar"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert s["wa"] == pytest.approx(3 / 5)
    assert s["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": None, "d": 0.0, "e": None, "f": None}
    assert s["support"]["b"] == 2 and s["confusion_matrix"][3][5] == 1
    assert s["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred))
    assert [k for k in s if k in metrics.METRICS] == list(metrics.METRICS)  # every registered metric, in order
    json.dumps(s, allow_nan=False)


def test_registry_holds_the_metrics_in_order_each_a_function_of_confusion_matrices():
    assert list(metrics.METRICS)[:4] == ["uar", "wa", "macro_f1", "kappa"]
    y_true, y_pred, w = _random_case(seed=5, weighted=True)
    cm = metrics.confusion_matrix(y_true, y_pred, C, weights=w)
    scalar = {"uar": metrics.uar, "macro_f1": metrics.macro_f1, "kappa": metrics.kappa}
    for name, m in metrics.METRICS.items():
        assert np.ndim(m.of_confusions(cm)) == 0 and m.value(cm) == metrics.all_of(cm)[name]
        if name in scalar:
            assert m.value(cm) == scalar[name](y_true, y_pred, C, weights=w)
    assert metrics.METRICS["wa"].value(cm) == metrics.weighted_accuracy(y_true, y_pred, weights=w)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="entries"):
        metrics.uar([0, 1], [0], C)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 6], [0, 1], C)
    assert np.isnan(metrics.uar([], [], C))
