"""The layer stack runs as bound submodules: what they sow and what an interceptor sees reach the caller."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exhubert_jax.model.config import preset
from exhubert_jax.model.expansion import expand
from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params
from exhubert_jax.model.layers import EncoderLayer
from hf_models import padded_batch

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="module")
def expanded():
    config = preset("tiny", num_hidden_layers=3, layerdrop=0.3, do_stable_layer_norm=False)
    params, config, _ = expand(init_params(config, 0), config, copies=2, style="gated")
    # Non-zero Linears, so that every copy changes the state it is given.
    lin = params["hubert"]["encoder"]["expansion"]["zll"]
    lin["kernel"] = lin["kernel"] + 0.05 * jax.random.normal(jax.random.PRNGKey(1), lin["kernel"].shape)
    return params, config


def run(config, params, **kwargs):
    x, mask = map(jnp.asarray, padded_batch())
    return HubertForSequenceClassification(config).apply({"params": params}, x, mask, **kwargs)


def test_sown_states_are_the_hidden_states_in_execution_order(expanded):
    params, config = expanded
    out, state = run(config, params, output_hidden_states=True, mutable=["intermediates"])
    sown = state["intermediates"]["hubert"]["encoder"]["stack"]
    (originals,), (copies,) = sown["original"]["hidden_states"], sown["copies"]["hidden_states"]
    assert originals.shape[0] == 3 and copies.shape[:2] == (3, 2)
    order = jnp.concatenate([originals[:, None], copies], axis=1).reshape(-1, *originals.shape[1:])
    assert order.shape[0] == config.total_layers
    np.testing.assert_array_equal(np.asarray(order), np.asarray(out.hidden_states[1:]))


@pytest.mark.parametrize("training", [False, True])
def test_an_interceptor_reaches_every_layer_as_a_bound_submodule(expanded, training):
    params, config = expanded
    paths = set()
    mode = dict(deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)}) if training else {}

    def no_feed_forward(next_fun, args, kwargs, context):
        """Record the layers' paths and drop their feed-forward branches."""
        if isinstance(context.module, EncoderLayer) and context.method_name == "branch":
            paths.add(context.module.path)
            if args[0] == "feed_forward":
                return jnp.zeros_like(args[1])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(no_feed_forward):
        got = run(config, params, **mode).logits
    stack = ("hubert", "encoder", "stack")
    # Flax checks the stored `layers` against their initializer's shapes with a layer of its own, at path ().
    assert paths - {()} == {(*stack, "original", "layer"), (*stack, "copies", "layer")}
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.zeros_like(leaf) if "output_dense" in jax.tree_util.keystr(path) else leaf, params)
    want = run(config, zeroed, **mode).logits
    assert not np.allclose(np.asarray(want), np.asarray(run(config, params, **mode).logits))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_a_stack_slot_draws_dropout_as_the_layer_alone_does():
    """The Flax internal the stack relies on (model.stack.restart_dropout_streams) still behaves: a layer run
    through the lifted transform inside nn.scan, as the stack runs it, draws at every step exactly what an apply
    of the layer alone with rngs={"dropout": that step's key} draws. A Flax upgrade that changes it fails here."""
    from exhubert_jax.model.stack import KeyedLayer

    config = preset("tiny", hidden_dropout=0.3, attention_dropout=0.3, activation_dropout=0.3)

    class Step(nn.Module):
        @nn.compact
        def __call__(self, x, key):
            return x, KeyedLayer(config, name="layer")(key, x, None, False)

    steps = nn.scan(Step, variable_broadcast="params", split_rngs={"params": False, "dropout": True}, length=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, config.hidden_size))
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    layer = EncoderLayer(config)
    params = layer.init({"params": jax.random.PRNGKey(1), "dropout": keys[0]}, x, None, True)["params"]
    _, lifted = steps().apply({"params": {"layer": params}}, x, keys, rngs={"dropout": jax.random.PRNGKey(9)})
    for i, key in enumerate(keys):
        alone = layer.apply({"params": params}, x, None, False, rngs={"dropout": key})
        assert not np.allclose(alone, layer.apply({"params": params}, x, None, True))  # dropout is really drawn
        np.testing.assert_allclose(np.asarray(lifted[i]), np.asarray(alone), rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
