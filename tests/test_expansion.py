"""Backbone Block Expansion: identity at init, purity, labels, training with frozen originals, compilation."""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exhubert_jax.model import expansion
from exhubert_jax.model.config import preset
from exhubert_jax.model.expansion import ExpansionError, expand
from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params
from exhubert_jax.model.param_labels import (FROZEN, TRAINABLE, LabelError, count, freezing_rules, labels_from_rules,
                                             param_labels, path_str)
from exhubert_jax.training.optimizer import make_optimizer, state_size
from exhubert_jax.training.step import create_state, make_train_step

jax.config.update("jax_default_matmul_precision", "highest")

SAMPLES = 4000
cached_init = functools.lru_cache(maxsize=None)(init_params)
CASES = [("zll", 1, True), ("zll", 2, True), ("zll", 1, False), ("zll", 2, False), ("zero_out", 1, True),
         ("zero_out", 2, True)]


def tiny(stable: bool = True, **overrides):
    """Tiny test config (hidden 32, 2 layers) in either layer-norm layout."""
    return preset("tiny", do_stable_layer_norm=stable, layerdrop=0.0, **overrides)


def batch(seed: int = 0, size: int = 2):
    """Random audio with the second utterance padded (mask), and random targets."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((size, SAMPLES)).astype(np.float32)
    mask = np.ones((size, SAMPLES), np.int32)
    mask[1, 2500:] = 0
    audio[1, 2500:] = 0.0
    return jnp.asarray(audio), jnp.asarray(mask), jnp.asarray(rng.integers(0, 6, size))


def forward(config, params, hidden=True):
    """Deterministic logits and hidden states."""
    audio, mask, _ = batch()
    model = HubertForSequenceClassification(config)
    run = jax.jit(lambda p, a, m: model.apply({"params": p}, a, m, output_hidden_states=hidden))
    return run(params, audio, mask)


def snapshot(tree):
    """Host copies of every leaf, to compare a tree before/after."""
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def assert_trees_equal(a, b):
    """Same structure and bit-identical leaves."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("style,copies,stable", CASES)
def test_identity_at_initialisation(style, copies, stable):
    config = tiny(stable)
    params = cached_init(config, 0)
    new_params, new_config, _ = expand(params, config, copies=copies, style=style)
    assert new_config.total_layers == 2 * (1 + copies) and new_config.expansion_style == style
    ref, out = forward(config, params), forward(new_config, new_params)
    assert float(jnp.max(jnp.abs(ref.logits - out.logits))) <= 1e-6
    assert out.hidden_states.shape[0] == 1 + 2 * (1 + copies)
    m = ref.frame_mask[..., None]
    final_ref = jnp.where(m, ref.hidden_states[-1], 0)
    assert float(jnp.max(jnp.abs(final_ref - jnp.where(m, out.hidden_states[-1], 0)))) <= 1e-6
    # every copy's hidden state equals its original's
    groups = out.hidden_states[1:].reshape(2, 1 + copies, *out.hidden_states.shape[1:])
    for c in range(1 + copies):
        np.testing.assert_allclose(np.where(m, groups[:, c], 0), np.where(m, ref.hidden_states[1:], 0), atol=1e-6)


def test_weighted_layer_sum_identity():
    config = tiny(True, use_weighted_layer_sum=True)
    params = cached_init(config, 1)
    params = {**params, "layer_weights": jnp.array([0.3, -1.0, 2.0])}
    new_params, new_config, labels = expand(params, config, copies=2)
    w = new_params["layer_weights"]
    assert w.shape == (7,) and labels["layer_weights"] == TRAINABLE
    np.testing.assert_allclose(w[0], 0.3)
    np.testing.assert_allclose(w[1:4], -1.0 - np.log(3), rtol=1e-6)
    ref, out = forward(config, params, False), forward(new_config, new_params, False)
    assert float(jnp.max(jnp.abs(ref.logits - out.logits))) <= 1e-6


def test_expand_is_pure():
    config = tiny()
    params = jax.tree.map(lambda x: np.array(x, copy=True), cached_init(config, 0))  # mutable numpy leaves
    before = snapshot(params)
    new_params, new_config, _ = expand(params, config, copies=1, style="zero_out")
    assert_trees_equal(params, before)
    assert config.expansion_copies == 0 and new_config is not config
    assert "expansion" not in params["hubert"]["encoder"]
    # the copies are new arrays: zeroing was not applied to the originals, and results don't alias numpy inputs
    assert np.any(before["hubert"]["encoder"]["layers"]["attention"]["out_proj"]["kernel"] != 0)
    assert all(not isinstance(x, np.ndarray) for x in jax.tree.leaves(new_params))
    copies = new_params["hubert"]["encoder"]["expansion"]["layers"]
    np.testing.assert_array_equal(copies["attention"]["q_proj"]["kernel"][:, 0],
                                  before["hubert"]["encoder"]["layers"]["attention"]["q_proj"]["kernel"])
    for name in ("out_proj",):
        assert not np.any(np.asarray(copies["attention"][name]["kernel"]))
    assert not np.any(np.asarray(copies["feed_forward"]["output_dense"]["bias"]))


def test_errors():
    config = tiny(False)
    params = cached_init(config, 0)
    with pytest.raises(ExpansionError, match="pre-LN"):
        expand(params, config, style="zero_out")
    new_params, new_config, _ = expand(params, config)
    with pytest.raises(ExpansionError, match="already expanded"):
        expand(new_params, new_config)
    for kwargs in (dict(copies=0), dict(style="other"), dict(freeze="all")):
        with pytest.raises(ExpansionError):
            expand(params, config, **kwargs)


@pytest.mark.parametrize("freeze", ["original", "none"])
def test_labels(freeze):
    config = tiny()
    _, _, labels = expand(cached_init(config, 0), config, copies=2, freeze=freeze)
    flat = {path_str(p): lab for p, lab in jax.tree_util.tree_leaves_with_path(labels)}
    for name, lab in flat.items():
        if name.startswith("hubert/feature_extractor/"):
            assert lab == FROZEN, name
        elif name.startswith("hubert/encoder/layers/"):
            assert lab == (FROZEN if freeze == "original" else TRAINABLE), name
        else:
            assert lab == TRAINABLE, name
    assert any(n.startswith("hubert/encoder/expansion/zll/") for n in flat)
    with pytest.raises(LabelError, match="bogus"):
        labels_from_rules({"bogus": jnp.zeros(2)}, freezing_rules(config))


@functools.lru_cache(maxsize=None)
def trained(style: str, copies: int, stable: bool, steps: int = 2) -> dict:
    """Expand a tiny model and take `steps` jitted train steps; host copies of params after each step, and stats."""
    config = tiny(stable)
    params, config, labels = expand(cached_init(config, 3), config, copies=copies, style=style)
    tx = make_optimizer(labels, 1e-3)
    step, counter = make_train_step(HubertForSequenceClassification(config), tx, labels)
    state = create_state(params, tx, seed=0)
    history = [jax.device_get(params)]
    for i in range(steps):
        audio, mask, targets = batch(i)
        state, metrics = step(state, {"input_values": audio, "attention_mask": mask, "targets": targets,
                                      "weights": jnp.ones(targets.shape, jnp.float32)})
        assert bool(metrics["ok"]) and np.isfinite(float(metrics["loss"]))
        history.append(jax.device_get(state.params))  # the step donates its input state: keep host copies
    return dict(history=history, config=config, labels=labels, traces=counter.count, cache=step._cache_size(),
                state_size=state_size(tx, history[0]))


TRAINED_CASES = [("zll", 1, True), ("zero_out", 2, True), pytest.param("zll", 1, False, marks=pytest.mark.slow)]


@pytest.mark.parametrize("style,copies,stable", TRAINED_CASES)
def test_training_moves_only_trainable(style, copies, stable):
    run = trained(style, copies, stable)
    start, end, labels = run["history"][0], run["history"][-1], run["labels"]
    for (path, a), b, lab in zip(jax.tree_util.tree_leaves_with_path(start), jax.tree.leaves(end),
                                 jax.tree.leaves(labels)):
        a, b = np.asarray(a), np.asarray(b)
        if lab == FROZEN:
            assert a.tobytes() == b.tobytes(), f"frozen {path_str(path)} changed"
        else:
            assert not np.array_equal(a, b), f"trainable {path_str(path)} did not move"
    if style == "zll":
        # a zero parameter moves under AdamW (decoupled decay of 0 is 0) only if its gradient is non-zero
        zll = run["history"][1]["hubert"]["encoder"]["expansion"]["zll"]
        assert np.all(np.abs(np.asarray(zll["kernel"])).max(axis=(-2, -1)) > 0)
    # AdamW moments (mu, nu) for trainable leaves only, plus a few step counters
    n_trainable = count(start, labels, TRAINABLE)
    assert 2 * n_trainable <= run["state_size"] <= 2 * n_trainable + 8
    assert run["state_size"] < 2 * count(start)


def test_train_step_compiles_once():
    run = trained("zll", 1, True)
    assert len(run["history"]) == 3 and run["traces"] == 1 and run["cache"] == 1


def compile_seconds(config, samples: int = SAMPLES, batch_size: int = 2) -> float:
    """Wall time to lower + compile the train step of `config` on abstract shapes."""
    params = expansion.param_shapes(config)
    labels = param_labels(params, config)
    tx = make_optimizer(labels)
    step, _ = make_train_step(HubertForSequenceClassification(config), tx, labels)
    state = jax.eval_shape(lambda p: create_state(p, tx, seed=0), params)
    batch = {"input_values": jax.ShapeDtypeStruct((batch_size, samples), jnp.float32),
             "attention_mask": jax.ShapeDtypeStruct((batch_size, samples), jnp.int32),
             "targets": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
             "weights": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}
    t0 = time.perf_counter()
    step.lower(state, batch).compile()
    return time.perf_counter() - t0


@pytest.mark.slow  # a wall-time comparison: on a loaded machine either compile may be slowed at random
def test_compile_time_flat_in_depth():
    times = {}
    for originals in (1, 4):  # 2 and 8 layers run
        config = tiny(num_hidden_layers=originals).replace(expansion_copies=1, expansion_style="zll")
        times[config.total_layers] = compile_seconds(config)
    assert times[8] < 2 * times[2], times


def test_summary_cli_counts(capsys):
    expected = {0: 311_492_486, 1: 336_682_886, 2: 664_182_662}
    for copies, trainable in expected.items():
        assert expansion.main(["--preset", "large", "--copies", str(copies)]) == 0
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert last["trainable"] == trainable
    assert expansion.main(["--preset", "large", "--copies", "1", "--freeze", "none"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["trainable"] == 638_992_262
    assert "664.18 M" in out and "664,182,662" in out
