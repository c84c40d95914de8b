"""Calibration metrics on hand-built cases, temperature scaling on a deliberately mis-calibrated model, and
temperature.json stored with a checkpoint."""

import json
import os

import numpy as np
import pytest

from exhubert_jax.evaluation import calibration as cal


def test_ece_and_mce_on_a_hand_built_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.62, 0.38], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins of width 1/15: 0.9 -> bin 13 (2 predictions, 1 right: |0.5 - 0.9| = 0.4), 0.62 -> bin 9 (|1 - 0.62|),
    # 0.7 -> bin 10 (|1 - 0.7|); ECE = (2 * 0.4 + 0.38 + 0.3) / 4, MCE = 0.4
    ece, mce = cal.ece_mce(probs, y)
    assert ece == pytest.approx((2 * 0.4 + 0.38 + 0.3) / 4) and mce == pytest.approx(0.4)
    r = cal.reliability(probs, y)
    assert r["counts"].tolist() == [0] * 9 + [1, 1, 0, 0, 2, 0] and r["accuracy"][13] == 0.5
    assert np.isnan(r["accuracy"][0]) and r["confidence"][9] == pytest.approx(0.62)


def test_calibrated_and_edge_cases():
    probs = np.tile([0.8, 0.1, 0.1], (5, 1))  # 80 % confident and 4 of 5 right: calibrated
    assert cal.ece_mce(probs, [0, 0, 0, 0, 1]) == pytest.approx((0.0, 0.0))
    r = cal.reliability(np.array([[1 / 3] * 3, [1.0, 0.0, 0.0]]), [0, 0])
    assert r["counts"][4] == 1 and r["counts"][14] == 1  # bins are (low, high]: 1/3 ends bin 4, 1.0 is in bin 14
    assert cal.ece_mce(np.array([[1 / 3] * 3]), [2]) == pytest.approx((1 / 3, 1 / 3))  # argmax 0, wrong


def test_nll_and_brier_by_hand():
    logits = np.array([[0.0, np.log(3.0)]])  # p = (0.25, 0.75)
    assert cal.nll(logits, [1]) == pytest.approx(-np.log(0.75))
    assert cal.nll(logits, [0], temperature=2.0) == pytest.approx(-np.log(1 / (1 + np.sqrt(3))))
    assert cal.brier(cal.probabilities(logits), [1]) == pytest.approx(2 * 0.25 ** 2)
    assert cal.brier(np.array([[1.0, 0.0]]), [1]) == 2.0
    s = cal.summary(logits, [1])
    assert set(s) == {"temperature", "ece", "mce", "nll", "brier"} and s["ece"] == pytest.approx(0.25)


def _miscalibrated(scale, n=5000, k=6, seed=0):
    """Labels drawn from softmax(z) and a model reporting scale * z (over-confident for scale > 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    p = cal.probabilities(z)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return scale * z, y


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_temperature_recovers_the_scale_lowers_nll_and_keeps_argmax(scale):
    logits, y = _miscalibrated(scale)
    t = cal.fit_temperature(logits, y)
    assert t == pytest.approx(scale, rel=0.1)
    assert cal.nll(logits, y, t) < cal.nll(logits, y) - 0.05
    assert cal.summary(logits, y, t)["ece"] < cal.summary(logits, y)["ece"]
    np.testing.assert_array_equal(cal.probabilities(logits, t).argmax(1), logits.argmax(1))
    for other in (0.8 * t, 1.25 * t):  # a minimum
        assert cal.nll(logits, y, t) < cal.nll(logits, y, other)


def test_temperature_json_round_trip_and_stale_weights(tmp_path):
    ckpt = tmp_path / "best"
    (ckpt / "params").mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "params" / "data").write_bytes(b"123")
    assert cal.load_temperature(ckpt) == (None, None)
    cal.save_temperature(ckpt, 1.7, {"demo-a": 18}, 1.2, 0.9)
    doc, why = cal.load_temperature(ckpt)
    assert why is None and doc["temperature"] == 1.7 and doc["fitted_on"] == {"demo-a": 18}
    st = (ckpt / "params" / "data").stat()
    os.utime(ckpt / "params" / "data", ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # the weights written again
    doc, why = cal.load_temperature(ckpt)
    assert doc is None and "earlier version of these weights" in why and "\n" not in why
    (ckpt / "temperature.json").write_text(json.dumps({"temperature": -1}))
    assert "not a positive number" in cal.load_temperature(ckpt)[1]
    (ckpt / "temperature.json").write_text("{trunc")
    assert "unreadable" in cal.load_temperature(ckpt)[1]


def test_validation_fit_pools_corpora_and_is_stored(tmp_path):
    from exhubert_jax.evaluation import statistics as analysis

    ckpt = tmp_path / "best"
    (ckpt / "params").mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    logits, y = _miscalibrated(2.0, n=400, k=3)
    results = [{"corpus": name, "class_names": ["a", "b", "c"],
                "utterances": [{"label": int(t), "logits": list(map(float, lg))} for t, lg in zip(y[s], logits[s])]}
               for name, s in (("one", slice(0, 150)), ("two", slice(150, 400)))]
    doc = analysis.fit_validation_temperature(ckpt, results)
    assert doc["temperature"] == pytest.approx(cal.fit_temperature(logits, y))
    assert doc["fitted_on"] == {"one": 150, "two": 250}
    assert doc["validation_nll"]["after"] < doc["validation_nll"]["before"]
    test = dict(results[0])
    analysis.add_calibration(test, doc["temperature"], show_before=True)
    assert test["calibration_before"]["temperature"] == 1.0
    assert test["calibration"]["nll"] < test["calibration_before"]["nll"]
