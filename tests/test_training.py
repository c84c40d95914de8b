"""The train step and loop: one compilation per bucket shape, NaN guard, frozen CNN, head swap (exact resume:
test_resume.py)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from exhubert_jax import HubertForSequenceClassification, init_params, preset
from exhubert_jax.data.loading.devices import batch_arrays, pad_rows, to_device
from exhubert_jax.evaluation.reports import uar_table
from exhubert_jax.model.heads import with_head
from exhubert_jax.model.param_labels import param_labels
from exhubert_jax.training.loop import train
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import TrainError, create_state, make_train_step
from toys import NO_DROPOUT, leaves_equal, opts, sources, tiny


def test_one_compilation_per_bucket_shape(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    result = train(model, params, labels, tr, va, tmp_path, opts(steps=24, eval_every=24), say=lambda s: None)
    shapes = set(result.bucket_shapes)
    assert result.compiles == len(shapes) == len(result.bucket_shapes)
    assert 1 <= result.compiles <= 3  # default_buckets(max_seconds) has 3 lengths


def test_compile_counter_counts_shapes_not_calls():
    model, params, labels = tiny(**NO_DROPOUT)
    tx = make_optimizer(labels, 1e-3)
    step, counter = make_train_step(model, tx, labels)
    state = create_state(params, tx, 0)
    rng = np.random.default_rng(0)
    for width in (1600, 2400, 1600, 2400, 3200, 1600):
        batch = dict(input_values=rng.standard_normal((2, width)).astype(np.float32),
                     attention_mask=np.ones((2, width), np.int32), targets=np.array([0, 1], np.int32),
                     weights=np.ones(2, np.float32))
        state, _ = step(state, to_device(batch, None))
    assert counter.count == 3 and int(state.step) == 6


def test_nan_input_is_skipped_and_params_unchanged():
    model, params, labels = tiny(**NO_DROPOUT)
    tx = make_optimizer(labels, 1e-3)
    step, _ = make_train_step(model, tx, labels)
    state = create_state(params, tx, 0)
    batch = dict(input_values=np.full((2, 1600), np.nan, np.float32), attention_mask=np.ones((2, 1600), np.int32),
                 targets=np.array([0, 1], np.int32), weights=np.ones(2, np.float32))
    before = jax.device_get((state.params, state.opt_state))
    state, metrics = step(state, to_device(batch, None))
    assert not bool(metrics["ok"])
    assert int(state.skipped) == 1 and int(state.step) == 1
    assert leaves_equal(before, (state.params, state.opt_state))
    good = dict(batch, input_values=np.random.default_rng(0).standard_normal((2, 1600)).astype(np.float32))
    state, metrics = step(state, to_device(good, None))
    assert bool(metrics["ok"]) and int(state.skipped) == 1
    assert not leaves_equal(before[0], state.params)


def test_too_many_bad_steps_stop_with_clear_error(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources(nan=True)
    with pytest.raises(TrainError, match="3 consecutive steps had a non-finite") as e:
        train(model, params, labels, tr, va, tmp_path, opts(steps=20, max_bad_steps=3), say=lambda s: None)
    assert f"no checkpoint was saved before it in {tmp_path}/checkpoints" in str(e.value)  # none is claimed
    skips = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "skip" for e in skips) == 3


def test_frozen_cnn_is_untouched_and_head_trains(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    result = train(model, params, labels, tr, va, tmp_path, opts(steps=4, eval_every=4, clip_norm=1.0,
                                                                 accumulate=2), say=lambda s: None)
    new = jax.device_get(result.state.params)
    assert leaves_equal(params["hubert"]["feature_extractor"], new["hubert"]["feature_extractor"])
    assert not leaves_equal(params["classifier"], new["classifier"])


def test_bfloat16_compute_keeps_float32_params(tmp_path):
    config = preset("tiny", **NO_DROPOUT)
    model = HubertForSequenceClassification(config, dtype=jax.numpy.bfloat16, remat=True)
    params = init_params(config, 0)
    tr, va = sources()
    result = train(model, params, param_labels(params, config), tr, va, tmp_path, opts(steps=2, eval_every=2),
                   say=lambda s: None)
    assert {x.dtype for x in jax.tree.leaves(result.state.params)} == {np.dtype("float32")}
    assert np.isfinite(result.final_uar["mean"])


def test_with_head_swaps_only_the_classifier():
    _, params, _ = tiny()
    config = preset("tiny")
    new_params, new_config = with_head(params, config, 4, ("a", "b", "c", "d"))
    assert new_config.num_labels == 4 and new_params["classifier"]["kernel"].shape[-1] == 4
    assert new_params["projector"] is params["projector"]
    same, same_config = with_head(params, config, config.num_labels, config.label_names)
    assert same is params and same_config is config


def test_pad_rows_and_table():
    arrays = batch_arrays(type("B", (), dict(input_values=np.ones((3, 5)), attention_mask=np.ones((3, 5)),
                                             labels=np.arange(3), native_labels=np.arange(3),
                                             weights=np.ones(3)))())
    padded = pad_rows(arrays, 4)
    assert padded["weights"].tolist() == [1, 1, 1, 0] and padded["attention_mask"][3].all()
    table = uar_table({"b": 0.5, "a": 0.25, "mean": 0.375})
    assert table.splitlines()[2] == "| a | 0.2500 |" and "**0.3750**" in table


def test_the_optimizer_is_passed_in_and_its_schedule_is_logged(tmp_path):
    import optax

    from exhubert_jax.model.param_labels import FROZEN, TRAINABLE

    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    frozen_everywhere = optax.multi_transform({TRAINABLE: optax.set_to_zero(), FROZEN: optax.set_to_zero()}, labels)
    result = train(model, params, labels, tr, va, tmp_path / "zero", opts(steps=2, eval_every=2),
                   say=lambda s: None, tx=frozen_everywhere)
    assert leaves_equal(result.state.params, params)  # the given optimiser made the updates, not AdamW
    logged = [json.loads(l) for l in (tmp_path / "zero" / "metrics.jsonl").read_text().splitlines()]
    assert all("lr" not in e for e in logged if e["event"] == "train")  # no schedule given: none is invented
    sgd = make_optimizer(labels, 0.5)  # another learning rate, named for the logs
    result = train(model, params, labels, tr, va, tmp_path / "sgd", opts(steps=2, eval_every=2),
                   say=lambda s: None, tx=sgd, schedule=0.5)
    assert not leaves_equal(result.state.params, params)
    logged = [json.loads(l) for l in (tmp_path / "sgd" / "metrics.jsonl").read_text().splitlines()]
    rates = [e["lr"] for e in logged if e["event"] == "train"]
    assert rates and set(rates) == {0.5}
