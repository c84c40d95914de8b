"""Continuous emotion: CCC / r / MAE against numpy references, the masked losses, the thresholds onto the 6 classes,
the CCC bootstrap, the config and its HF form, and batches carrying dimensional targets."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from exhubert_jax.data.loading.devices import batch_arrays
from exhubert_jax.evaluation import dimensional as dm
from exhubert_jax.model.config import ConfigError, HubertConfig, from_hf_config, preset, to_hf_config
from exhubert_jax.model.heads import TaskError, heads_for_task, parse_task_weights
from exhubert_jax.training.step import batch_loss


def reference_ccc(x, y):
    """Lin's CCC written from its definition with numpy's biased covariance."""
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x.mean() - y.mean()) ** 2)


def test_ccc_pearson_mae_equal_references():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 50)
    y = 0.6 * x + 0.2 + 0.1 * rng.standard_normal(50)
    assert dm.ccc(x, y) == pytest.approx(reference_ccc(x, y), abs=1e-12)
    assert dm.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert dm.mae(x, y) == pytest.approx(np.mean(np.abs(x - y)), abs=1e-12)
    assert dm.ccc(x, x) == pytest.approx(1.0, abs=1e-12)
    assert dm.ccc(x, 2 * x.mean() - x) == pytest.approx(-1.0, abs=1e-12)  # mirrored about the mean
    assert dm.ccc(x, x + 0.5) < dm.pearson(x, x + 0.5) == pytest.approx(1.0)  # a bias costs CCC, not r
    assert np.isnan(dm.ccc([0.3], [0.2])) and np.isnan(dm.pearson(x, np.ones(50)))


def test_masked_loss_equals_ccc_of_the_labelled_rows():
    rng = np.random.default_rng(1)
    pred, target = rng.uniform(0, 1, (12, 3)), rng.uniform(0, 1, (12, 3))
    mask = np.ones((12, 3))
    mask[:5, 1] = 0
    mask[:, 2] = 0  # nobody rated the third dimension: it is left out of the mean, whatever its targets hold
    target_garbage = np.where(mask > 0, target, 1e6)
    loss = float(dm.dimensional_loss(jnp.asarray(pred), jnp.asarray(target_garbage), jnp.asarray(mask)))
    want = np.mean([1 - reference_ccc(target[:, 0], pred[:, 0]), 1 - reference_ccc(target[5:, 1], pred[5:, 1])])
    assert loss == pytest.approx(want, abs=1e-6)
    mse = float(dm.dimensional_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), "mse"))
    assert mse == pytest.approx(np.mean([np.mean((pred[:, 0] - target[:, 0]) ** 2),
                                         np.mean((pred[5:, 1] - target[5:, 1]) ** 2)]), abs=1e-6)
    assert float(dm.dimensional_loss(jnp.asarray(pred), jnp.asarray(target), jnp.zeros((12, 3)))) == 0.0
    with pytest.raises(ValueError, match="ccc"):
        dm.dimensional_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), "l1")


def test_thresholds_map_arousal_and_valence_onto_the_six_classes():
    a = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.5, 0.49]
    v = [0.1, 0.5, 0.9, 0.1, 0.5, 0.9, 1 / 3, 2 / 3]
    assert dm.classes_from_dims(a, v).tolist() == [0, 1, 2, 3, 4, 5, 4, 2]


def test_ccc_intervals_are_deterministic_cover_the_estimate_and_use_speakers():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0, 1, (60, 2))
    pred = truth + 0.15 * rng.standard_normal((60, 2))
    truth[3, 1] = np.nan  # an unrated utterance is left out of that dimension
    speakers = [f"s{i % 6}" for i in range(60)]
    one, means = dm.ccc_intervals(truth, pred, ("arousal", "valence"), speakers, 200, 0, "x")
    two, _ = dm.ccc_intervals(truth, pred, ("arousal", "valence"), speakers, 200, 0, "x")
    assert one == two and one["unit"] == "cluster" and one["n_speakers"] == 6 and means.shape == (200,)
    point = dm.summarize_dims(truth, pred, ("arousal", "valence"))
    for name in ("arousal", "valence"):
        lo, hi = one[name]
        assert lo <= point["dims"][name]["ccc"] <= hi < 1
    assert point["dims"]["valence"]["n"] == 59
    assert dm.ccc_intervals(truth, pred, ("arousal", "valence"), None, 50, 0)[0]["unit"] == "utterance"


def test_config_dimensions_round_trip_and_hf_form():
    both = preset("tiny", dimensions=dm.DIMENSIONS)
    assert HubertConfig.from_dict(both.to_dict()) == both
    hf = to_hf_config(both)
    assert hf["num_labels"] == 9 and hf["exhubert_dimensions"] == list(dm.DIMENSIONS) and "problem_type" not in hf
    assert from_hf_config(hf) == both
    only = preset("tiny", num_labels=0, dimensions=dm.DIMENSIONS)
    hf = to_hf_config(only)
    assert (hf["num_labels"], hf["problem_type"]) == (3, "regression")
    assert from_hf_config(hf) == only
    stock = {k: v for k, v in hf.items() if k != "exhubert_dimensions"}  # a stock regression model, named by id2label
    assert from_hf_config(stock).dimensions == dm.DIMENSIONS
    with pytest.raises(ConfigError, match="num_labels"):
        preset("tiny", num_labels=0)
    with pytest.raises(ConfigError, match="distinct"):
        preset("tiny", dimensions=("arousal", "arousal"))


def test_heads_for_task_and_task_weights():
    config = preset("tiny")
    params = {"projector": {}, "classifier": {"kernel": np.zeros((16, 6)), "bias": np.zeros(6)}}  # heads only
    p, c = heads_for_task(params, config, "dimensional")
    assert (c.num_labels, c.dimensions, "classifier" in p, p["regressor"]["kernel"].shape) == (0, dm.DIMENSIONS, False,
                                                                                            (16, 3))
    p, c = heads_for_task(p, c, "both")
    assert (c.num_labels, c.dimensions, p["classifier"]["kernel"].shape) == (6, dm.DIMENSIONS, (16, 6))
    p2, c2 = heads_for_task(p, c, "categorical")
    assert "regressor" not in p2 and c2.dimensions == ()
    assert parse_task_weights("dimensional=0.5") == (1.0, 0.5) and parse_task_weights(None) == (1.0, 1.0)
    with pytest.raises(TaskError, match="unknown task"):
        parse_task_weights("arousal=1")
    with pytest.raises(TaskError, match="number"):
        parse_task_weights("categorical=x")


def test_batch_arrays_and_loss_mask_missing_ratings():
    batch = type("B", (), dict(input_values=np.zeros((3, 5)), attention_mask=np.ones((3, 5)), labels=np.zeros(3),
                               weights=np.asarray([1.0, 1.0, 0.0]),
                               dims=np.asarray([[0.2, np.nan, 0.5], [0.7, 0.1, np.nan], [np.nan] * 3])))
    arrays = batch_arrays(batch, dimensions=("valence", "arousal"), task_weights=(0.0, 2.0))
    assert np.allclose(arrays["dims"], [[0.0, 0.2], [0.1, 0.7], [0.0, 0.0]])
    assert arrays["dims_mask"].tolist() == [[0, 1], [1, 1], [0, 0]] and arrays["task_weights"].shape == (3, 2)
    config = preset("tiny", dimensions=("valence", "arousal"))
    out = type("O", (), dict(logits=jnp.zeros((3, 6)), values=jnp.asarray([[0.3, 0.1], [0.2, 0.9], [5.0, 5.0]])))
    loss = float(batch_loss(out, {k: jnp.asarray(v) for k, v in arrays.items()}, config))
    arousal = 1 - reference_ccc(np.array([0.2, 0.7]), np.array([0.1, 0.9]))  # valence has one row: CCC 0
    assert loss == pytest.approx(2.0 * (arousal + 1.0) / 2, abs=1e-5)
