"""Bootstrap intervals: metrics on stacked confusion matrices, the resampling units, coverage of a planted UAR."""

import numpy as np
import pytest

from exhubert_jax.evaluation import bootstrap as bs, metrics

K = 6
CLASS_RECALL = np.array([0.4, 0.5, 0.6, 0.65, 0.7, 0.8])  # planted per-class recall; true UAR = its mean


def _predict(rng, y, recall):
    """Correct with probability recall[i] per utterance, else a uniformly drawn wrong class."""
    correct = rng.random(y.size) < recall
    wrong = (y + rng.integers(1, K, y.size)) % K
    return np.where(correct, y, wrong)


def clustered_test_set(rng, n_speakers=30, per_class=5, concentration=3.0):
    """Labels, predictions, speakers: each speaker's recall of class c ~ Beta with mean CLASS_RECALL[c]."""
    y = np.tile(np.repeat(np.arange(K), per_class), n_speakers)
    speakers = np.repeat(np.arange(n_speakers), K * per_class)
    a, b = concentration * CLASS_RECALL, concentration * (1 - CLASS_RECALL)
    recall = rng.beta(a, b, size=(n_speakers, K))[speakers, y]
    return y, _predict(rng, y, recall), [f"spk{s}" for s in speakers]


def test_metrics_on_stacks_equal_the_scalar_metrics():
    rng = np.random.default_rng(0)
    cms = rng.integers(0, 4, size=(50, K, K)).astype(float)
    cms[::3, 2, :] = 0  # a class absent from the test set
    cms[::5, :, 4] = 0
    cms[::5, 4, :] = 0  # a class neither true nor predicted
    stacked = bs.of_every_metric(cms)
    assert list(stacked) == list(metrics.METRICS)
    for i, cm in enumerate(cms):  # the stack of each registered metric equals its value matrix by matrix
        for name, m in metrics.METRICS.items():
            assert stacked[name][i] == pytest.approx(m.value(cm))
        assert bs.wa_many(cms)[i] == pytest.approx(np.trace(cm) / cm.sum())
        assert bs.uar_many(cms)[i] == pytest.approx(np.nanmean(metrics.per_class_recall(cm)))
    assert bs.of_every_metric(cms.reshape(5, 10, K, K))["macro_f1"].shape == (5, 10)  # any leading axes
    assert all(np.isnan(v).all() for v in bs.of_every_metric(np.zeros((2, K, K))).values())


def test_units_reproduce_the_confusion_matrix():
    rng = np.random.default_rng(1)
    y, pred, spk = clustered_test_set(rng, n_speakers=7)
    expected = metrics.confusion_matrix(y, pred, K)
    for speakers, method, units_n in ((spk, "cluster", 7), (None, "utterance", None)):
        units = bs.make_units(y, pred, K, speakers)
        assert units.method == method and units.n_clusters == units_n
        np.testing.assert_array_equal(bs.observed(units)[0], expected)
        totals = bs.resample(units, 2000, np.random.default_rng(0))[:, 0].sum(axis=(1, 2))
        if method == "utterance":  # n utterances drawn with replacement
            assert (totals == y.size).all()
        else:  # 7 speakers drawn with replacement: the size varies only when speakers differ in size
            assert totals.mean() == pytest.approx(y.size, rel=0.01)


def test_few_speakers_fall_back_to_utterances():
    y = np.arange(40) % K
    units = bs.make_units(y, y, K, [f"s{i % (bs.MIN_CLUSTERS - 1)}" for i in range(40)])
    assert units.method == "utterance" and units.n_clusters == bs.MIN_CLUSTERS - 1
    assert "too narrow" in bs.method_label(units) and bs.short_label("utterance", 1) == "utterances (1 speaker)"
    assert bs.make_units(y, y, K, [None] + ["a"] * 39).method == "utterance"
    assert bs.make_units(y, y, K, [f"s{i % bs.MIN_CLUSTERS}" for i in range(40)]).method == "cluster"


def test_utterance_bootstrap_matches_explicit_resampling():
    """Drawing cells from a multinomial is drawing utterances with replacement: same spread of UAR."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, K, 400)
    pred = _predict(rng, y, CLASS_RECALL[y])
    _, fast = bs.intervals(y, pred, K, None, 4000, seed=0)
    draws = np.random.default_rng(1).integers(0, y.size, size=(4000, y.size))
    slow = np.array([metrics.uar(y[i], pred[i], K) for i in draws])
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.003)
    assert fast.std() == pytest.approx(slow.std(), rel=0.06)


def test_intervals_are_deterministic_per_seed_and_name():
    rng = np.random.default_rng(3)
    y, pred, spk = clustered_test_set(rng, n_speakers=10)
    a, sa = bs.intervals(y, pred, K, spk, 300, seed=0, name="emodb")
    b, sb = bs.intervals(y, pred, K, spk, 300, seed=0, name="emodb")
    c, _ = bs.intervals(y, pred, K, spk, 300, seed=1, name="emodb")
    assert a == b and np.array_equal(sa, sb) and a["uar"] != c["uar"]
    assert a["method"] == "cluster bootstrap over 10 speakers" and a["resamples"] == 300
    point = metrics.uar(y, pred, K)
    assert a["uar"][0] < point < a["uar"][1] and a["wa"][0] < a["wa"][1] and a["macro_f1"][0] < a["macro_f1"][1]
    assert a["kappa"][0] < metrics.kappa(y, pred, K) < a["kappa"][1]
    info, samples = bs.resampled(y, pred, K, spk, 300, seed=0, name="emodb")
    assert info == a and np.array_equal(samples["uar"], sa) and set(samples) == set(metrics.METRICS)


def _coverage(n_sets, make, speakers_known, seed=0):
    """Fraction of simulated test sets whose 95 % UAR interval (1000 resamples) holds the planted true UAR."""
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(n_sets):
        y, pred, spk = make(rng)
        ci, _ = bs.intervals(y, pred, K, spk if speakers_known else None, 1000, seed=i)
        hits += ci["uar"][0] <= CLASS_RECALL.mean() <= ci["uar"][1]
    return hits / n_sets


def _independent_test_set(rng):
    """Independent utterances with unequal class priors."""
    y = rng.choice(K, size=300, p=[0.3, 0.25, 0.15, 0.12, 0.1, 0.08])
    return y, _predict(rng, y, CLASS_RECALL[y]), None


def test_cluster_bootstrap_covers_the_planted_uar_quick():
    """100 test sets of 30 speakers with strong speaker effects: a quick version of the slow tests below."""
    cluster = _coverage(100, clustered_test_set, True)
    assert 0.87 <= cluster <= 1.0 and _coverage(100, clustered_test_set, False) < cluster


@pytest.mark.slow
def test_cluster_bootstrap_covers_the_planted_uar():
    """1000 test sets of 30 speakers with strong speaker effects: the speaker bootstrap covers ~95 %, the utterance
    bootstrap (which treats dependent utterances as independent) far less. Observed: 0.939 and 0.808."""
    cluster = _coverage(1000, clustered_test_set, True)
    naive = _coverage(1000, clustered_test_set, False)
    assert 0.92 <= cluster <= 0.97, cluster
    assert naive < 0.88, naive


@pytest.mark.slow
def test_utterance_bootstrap_covers_the_planted_uar_on_independent_utterances():
    """1000 test sets of 300 independent utterances: coverage ~95 % (observed 0.933; a percentile interval is a
    little short on a few hundred utterances)."""
    assert 0.92 <= _coverage(1000, _independent_test_set, False) <= 0.97


def test_mean_interval_over_corpora():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.6, 0.02, 2000), rng.normal(0.4, 0.04, 2000)
    lo, hi = bs.mean_interval([a, b])
    sd = np.sqrt(0.02 ** 2 + 0.04 ** 2) / 2  # independent corpora: the spread of the mean
    assert lo == pytest.approx(0.5 - 1.96 * sd, abs=0.004) and hi == pytest.approx(0.5 + 1.96 * sd, abs=0.004)
    a[:10] = np.nan  # a corpus undefined in a resample is left out of that resample's mean
    assert np.isfinite(bs.mean_interval([a, b])).all()
