"""Paired comparison: p-values uniform under the null, small for a planted difference; Holm; test-set checks."""

import numpy as np
import pytest
from scipy import stats

from exhubert_jax.evaluation import metrics, paired_tests as paired

K = 6


def _run(rng, y, recall):
    """Predictions correct with probability recall, else a uniformly drawn wrong class."""
    correct = rng.random(y.size) < recall
    return np.where(correct, y, (y + rng.integers(1, K, y.size)) % K)


def _pair(rng, n=240, recall_a=0.6, recall_b=0.6, n_speakers=None):
    """Labels, (2, n) predictions of two runs with independent errors, and speakers (or None)."""
    y = rng.integers(0, K, n)
    speakers = None if n_speakers is None else [f"s{i % n_speakers}" for i in range(n)]
    return y, np.vstack([_run(rng, y, recall_a), _run(rng, y, recall_b)]), speakers


@pytest.mark.parametrize("n_speakers", [None, 20])
def test_p_values_are_uniform_under_the_null(n_speakers):
    rng = np.random.default_rng(0)
    ps = []
    for i in range(300):
        y, preds, spk = _pair(rng, n_speakers=n_speakers)
        ps.append(paired.compare(y, preds, K, spk, 499, seed=i)[0]["p"])
    ps = np.asarray(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09


def test_planted_difference_is_found_with_its_interval():
    rng = np.random.default_rng(1)
    y, preds, _ = _pair(rng, n=600, recall_a=0.5, recall_b=0.65)
    result, boot = paired.compare(y, preds, K, None, 999, seed=0)
    assert result["p"] < 0.01 and result["method"] == "utterance bootstrap (speakers unknown)"
    lo, hi = result["interval"]
    assert 0 < lo < result["diff"] < hi and 0.15 - 0.1 < result["diff"] < 0.15 + 0.1
    assert boot.shape == (999,)


def test_every_metric_is_compared_on_the_same_resamples():
    rng = np.random.default_rng(4)
    y, preds, spk = _pair(rng, n=300, recall_a=0.5, recall_b=0.7, n_speakers=12)
    row, boots = paired.compare_metrics(y, preds, K, spk, 300, seed=0)
    assert set(row["metrics"]) == set(boots) == set(metrics.METRICS)
    for name, m in metrics.METRICS.items():
        point = [m.value(metrics.confusion_matrix(y, p, K)) for p in preds]
        assert row["metrics"][name]["diff"] == pytest.approx(point[1] - point[0]) and boots[name].shape == (300,)
    legacy, boot = paired.compare(y, preds, K, spk, 300, seed=0)
    assert legacy == row and np.array_equal(boot, boots["uar"])
    assert (row["diff"], row["interval"], row["p"]) == tuple(row["metrics"]["uar"][k] for k in ("diff", "interval", "p"))


def test_identical_runs_have_no_difference():
    rng = np.random.default_rng(2)
    y, preds, spk = _pair(rng, n_speakers=8)
    result, _ = paired.compare(y, np.vstack([preds[0], preds[0]]), K, spk, 200, seed=0)
    assert result["diff"] == 0 and result["interval"] == [0.0, 0.0] and result["p"] == 1.0
    assert result["method"] == "cluster bootstrap over 8 speakers"


def test_holm_adjusts_in_input_order():
    assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    rows = paired.add_holm([{"p": 0.001}, {"p": 0.03}, {"p": 0.2}])
    assert [r["significant"] for r in rows] == [True, False, False]
    assert [r["p_holm"] for r in rows] == pytest.approx([0.003, 0.06, 0.2])


def _result(files, labels, space="emotion", names=("a", "b")):
    """An evaluate_corpus-shaped result."""
    utts = [{"index": i, "file": f, "label": y, "pred": y} for i, (f, y) in enumerate(zip(files, labels))]
    return {"label_space": space, "class_names": list(names), "utterances": utts}


def test_differing_test_sets_are_refused():
    base = _result(["x.wav", "y.wav"], [0, 1])
    paired.check_same_test_set("c", base, _result(["x.wav", "y.wav"], [0, 1]), "A", "B")  # the same: accepted
    cases = [(_result(["x.wav"], [0]), "2 vs 1 utterances"), (_result(["x.wav", "z.wav"], [0, 1]), "z.wav"),
             (_result(["x.wav", "y.wav"], [0, 0]), "label 0"),
             (_result(["x.wav", "y.wav"], [0, 1], "native"), "label spaces")]
    for other, needle in cases:
        with pytest.raises(paired.TestSetMismatch) as e:
            paired.check_same_test_set("c", base, other, "A", "B")
        message = str(e.value)
        assert "\n" not in message and message.startswith("c: B and the baseline A")
        assert needle in message


def _scored(labels, preds, speakers, corpus):
    """An evaluate_corpus-shaped result with predictions and speakers."""
    utts = [{"index": i, "file": f"{corpus}/{i}.wav", "label": int(y), "pred": int(p), "speaker": s}
            for i, (y, p, s) in enumerate(zip(labels, preds, speakers))]
    return {"corpus": corpus, "label_space": "emotion", "class_names": [str(c) for c in range(K)], "utterances": utts}


def test_compare_to_baseline_corrects_over_corpora_and_averages():
    from exhubert_jax.evaluation import statistics as analysis

    rng = np.random.default_rng(3)
    cells = {"A": {}, "B": {}}
    for corpus, gain in (("big-gain", 0.3), ("no-gain", 0.0)):
        y, preds, spk = _pair(rng, n=300, recall_a=0.5, recall_b=0.5 + gain, n_speakers=10)
        cells["A"][corpus], cells["B"][corpus] = _scored(y, preds[0], spk, corpus), _scored(y, preds[1], spk, corpus)
    rows = {r["corpus"]: r for r in analysis.compare_to_baseline(cells, "A", 300, seed=0)}
    assert set(rows) == {"big-gain", "no-gain", "average"} and rows["big-gain"]["significant"]
    assert rows["big-gain"]["method"] == "cluster bootstrap over 10 speakers"
    assert rows["big-gain"]["p_holm"] == pytest.approx(min(1.0, 2 * rows["big-gain"]["p"]))
    assert rows["average"]["diff"] == pytest.approx((rows["big-gain"]["diff"] + rows["no-gain"]["diff"]) / 2)
    assert "p" not in rows["average"] and rows["average"]["interval"][0] < rows["average"]["diff"]
    for r in rows.values():  # every registered metric, UAR's figures also at the top level
        assert set(r["metrics"]) == set(metrics.METRICS) and r["metrics"]["uar"]["diff"] == r["diff"]
    for name in metrics.METRICS:  # Holm over the corpora, each metric on its own
        big, none = rows["big-gain"]["metrics"][name], rows["no-gain"]["metrics"][name]
        assert [big["p_holm"], none["p_holm"]] == pytest.approx(paired.holm([big["p"], none["p"]]))
        assert rows["average"]["metrics"][name]["diff"] == pytest.approx((big["diff"] + none["diff"]) / 2)
    assert rows["big-gain"]["metrics"]["kappa"]["significant"] and rows["big-gain"]["metrics"]["kappa"]["diff"] > 0
    cells["B"]["no-gain"]["utterances"][5]["file"] = "elsewhere.wav"
    with pytest.raises(paired.TestSetMismatch, match="no-gain: B and the baseline A"):
        analysis.compare_to_baseline(cells, "A", 50, seed=0)
