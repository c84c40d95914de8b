"""docs/adapters.md's "Write your own adapter" recipe, followed literally: a method defined and registered here alone."""

from __future__ import annotations

import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import HubertForSequenceClassification as TorchSeqCls

from converters import flax_to_torch
from converters.mapping import CheckpointMismatch, params_to_state_dict
from converters.torch_to_flax import convert
from exhubert_jax import adapters
from exhubert_jax.adapters import build
from exhubert_jax.adapters.core import Method, leaf_regex, map_dense, register
from exhubert_jax.adapters.interceptors import after, dense_targets
from exhubert_jax.adapters.registry import REGISTRY, Option
from exhubert_jax.model.config import ConfigError, from_hf_config
from exhubert_jax.model.param_labels import TRAINABLE, path_str
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import create_state, make_train_step
from hf_models import padded_batch, save_tiny, torch_forward

jax.config.update("jax_default_matmul_precision", "highest")
SPEC = "shift:targets=v+ff2"


def init_leaf(name, shape, dtype, key, base):
    return jnp.zeros(shape, dtype)                     # identity at initialisation (base: the weights adapted)


def on_dense(dense, args, y, options):                 # each targeted projection's output, plus a vector
    return y + dense.param("shift", nn.initializers.zeros, (dense.features,), jnp.float32).astype(y.dtype)


def merge(params, options):
    def fold(node):                                    # every Dense of every layer and copy
        if "shift" not in node:
            return node
        node["bias"] = node["bias"] + node.pop("shift")
        return node
    return map_dense(params, fold)


@pytest.fixture(scope="module")
def shift():
    """The recipe's method, registered as docs/adapters.md says (and removed again afterwards)."""
    method = register(Method("shift", leaf_regex(r"/shift$"), init_leaf, merge=merge,
                             intercept=after(dense_targets, on_dense),
                             options={"targets": Option("targets", ("v",))}))
    yield method
    REGISTRY.pop(method.name)


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    """A tiny random transformers model and our converted (config, params)."""
    path = tmp_path_factory.mktemp("hf") / "base"
    torch_model = save_tiny(path, "large")
    config = from_hf_config(json.loads((path / "config.json").read_text())).replace(layerdrop=0.0)
    params, _ = convert({k: v.detach().numpy() for k, v in torch_model.state_dict().items()}, config)
    return config, params


def logits(config, params, x, mask):
    """Deterministic logits."""
    return np.asarray(build(config).apply({"params": params}, x, mask).logits)


def test_the_method_starts_as_the_identity_and_trains(shift, hf_tiny):
    config, params = hf_tiny
    x, mask = map(jnp.asarray, padded_batch((1600, 1200)))
    adapted, new_config, labels = adapters.apply_spec(params, config, SPEC)
    assert shift.structural and new_config.adapters == (SPEC,)
    forward = lambda cfg: jax.jit(lambda p: build(cfg).apply({"params": p}, x, mask).logits)
    before, adapted_forward = np.asarray(forward(config)(params)), forward(new_config)
    np.testing.assert_array_equal(adapted_forward(adapted), before)
    names = {path_str(p): lab for p, lab in jax.tree_util.tree_leaves_with_path(labels)}
    assert {n for n, lab in names.items() if lab == TRAINABLE and not n.startswith(("projector/", "classifier/"))} == {
        "hubert/encoder/layers/attention/v_proj/shift", "hubert/encoder/layers/feed_forward/output_dense/shift"}
    tx = make_optimizer(labels, 1e-2)
    step, _ = make_train_step(build(new_config), tx, labels)
    state, metrics = step(create_state(adapted, tx, seed=0), {"input_values": x, "attention_mask": mask,
                                                              "targets": jnp.asarray([1, 4]),
                                                              "weights": jnp.ones(2, jnp.float32)})
    assert bool(metrics["ok"])
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(adapted), jax.tree.leaves(state.params)):
        moved = not np.array_equal(a, b)
        assert moved == (names[path_str(path)] == TRAINABLE), path_str(path)
    assert np.abs(np.asarray(adapted_forward(state.params)) - before).max() > 1e-4


def test_the_method_is_refused_unmerged_and_exports_merged(shift, hf_tiny, tmp_path):
    config, params = hf_tiny
    adapted, new_config, _ = adapters.apply_spec(params, config, SPEC)
    rng = np.random.default_rng(0)
    adapted = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) if shift.owns(path_str(p)) else v,
        adapted)
    with pytest.raises(ConfigError, match=re.escape(f"unmerged adapters ({SPEC})")):
        flax_to_torch.export(adapted, new_config, tmp_path / "refused")
    with pytest.raises(CheckpointMismatch, match="layers/attention/v_proj/shift \\(adapter 'shift'\\)"):
        params_to_state_dict(adapted, new_config)
    assert not (tmp_path / "refused").exists()
    x, mask = padded_batch()
    ours = logits(new_config, adapted, jnp.asarray(x), jnp.asarray(mask))
    merged, plain = adapters.merge(adapted, new_config)
    assert plain.adapters == ()
    flax_to_torch.export(merged, plain, tmp_path / "pt")
    model, info = TorchSeqCls.from_pretrained(tmp_path / "pt", output_loading_info=True)
    assert not any(info.values()), info
    theirs, _ = torch_forward(model.eval(), x, mask)
    assert np.abs(theirs - ours).max() <= 1e-4


def test_a_method_initialises_from_the_weights_it_adapts(hf_tiny):
    """A method's init_leaf sees the base weights (DoRA starts its magnitude at the column norms of W)."""
    def magnitude(name, shape, dtype, key, base):
        return jnp.linalg.norm(base[name.replace("/magnitude", "/kernel")], axis=-2).astype(dtype)

    def scale(dense, args, y, options):
        m = dense.param("magnitude", nn.initializers.ones, (dense.features,), jnp.float32)
        return y * (m / jnp.linalg.norm(dense.variables["params"]["kernel"], axis=0)).astype(y.dtype)

    method = register(Method("colnorm", leaf_regex(r"/magnitude$"), magnitude, intercept=after(dense_targets, scale),
                             options={"targets": Option("targets", ("q",))}))
    try:
        config, params = hf_tiny
        adapted, new_config, _ = adapters.apply_spec(params, config, "colnorm")
        layer = adapted["hubert"]["encoder"]["layers"]["attention"]["q_proj"]
        np.testing.assert_allclose(layer["magnitude"], np.linalg.norm(np.asarray(layer["kernel"]), axis=-2),
                                   rtol=1e-6)
        x, mask = padded_batch()
        np.testing.assert_allclose(logits(new_config, adapted, x, mask), logits(config, params, x, mask),
                                   atol=1e-5)  # m = ||W|| makes it the identity, as DoRA starts
    finally:
        REGISTRY.pop(method.name)
