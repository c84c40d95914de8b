"""Our Flax HuBERT against transformers' PyTorch HuBERT: logits and every hidden state, padded batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from converters.torch_io import read_source
from converters.torch_to_flax import config_for, convert
from exhubert_jax.model.hubert import HubertForSequenceClassification, HubertModel
from hf_models import padded_batch, save_tiny, torch_forward

jax.config.update("jax_default_matmul_precision", "highest")
TOL = 1e-4  # the ceiling we accept on tiny random models; achieved figures are ~1e-6 (asserted below for the large layout)


def load_converted(path):
    state, hf = read_source(path)
    config = config_for(hf, state, None)
    return config, convert(state, config)[0]


@pytest.mark.parametrize("layout", ["large", "base"])
@pytest.mark.parametrize("weighted", [False, True])
def test_logits_and_hidden_states_match_transformers(tmp_path, layout, weighted):
    torch_model = save_tiny(tmp_path, layout, use_weighted_layer_sum=weighted)
    config, params = load_converted(tmp_path)
    x, mask = padded_batch()
    # base models are used without an attention mask (group norm sees the padding), large ones with it
    mask = mask if layout == "large" else None
    want_logits, want_hidden = torch_forward(torch_model, x, mask)
    out = HubertForSequenceClassification(config).apply({"params": params}, jnp.asarray(x),
                                                         None if mask is None else jnp.asarray(mask),
                                                         output_hidden_states=True)
    assert out.hidden_states.shape == want_hidden.shape
    hidden_err = np.abs(np.asarray(out.hidden_states) - want_hidden).max()
    logit_err = np.abs(np.asarray(out.logits) - want_logits).max()
    assert hidden_err <= TOL and logit_err <= TOL, (hidden_err, logit_err)
    assert np.abs(want_logits).max() > 1e-2  # the comparison is not between two near-zero vectors
    if layout == "large":
        assert hidden_err < 1e-5


def test_padded_frames_are_masked_like_transformers_with_base_layout_mask(tmp_path):
    torch_model = save_tiny(tmp_path, "base")
    config, params = load_converted(tmp_path)
    x, mask = padded_batch()
    want_logits, want_hidden = torch_forward(torch_model, x, mask)
    out = HubertForSequenceClassification(config).apply({"params": params}, jnp.asarray(x), jnp.asarray(mask),
                                                         output_hidden_states=True)
    assert np.abs(np.asarray(out.logits) - want_logits).max() <= TOL
    assert np.abs(np.asarray(out.hidden_states) - want_hidden).max() <= TOL


def test_bare_encoder_matches_hubert_model(tmp_path):
    torch_model = save_tiny(tmp_path, "large", head="model")
    config, params = load_converted(tmp_path)
    x, mask = padded_batch()
    want_last, want_hidden = torch_forward(torch_model, x, mask)
    out = HubertModel(config).apply({"params": params["hubert"]}, jnp.asarray(x), jnp.asarray(mask),
                                    output_hidden_states=True)
    assert np.abs(np.asarray(out.last_hidden_state) - want_last).max() < 1e-5
    assert np.abs(np.asarray(out.hidden_states) - want_hidden).max() < 1e-5


def test_padding_invariance(tmp_path):
    save_tiny(tmp_path, "large")
    config, params = load_converted(tmp_path)
    model = HubertForSequenceClassification(config)
    x, mask = padded_batch((4000, 2600))
    batched = model.apply({"params": params}, jnp.asarray(x), jnp.asarray(mask)).logits
    alone = model.apply({"params": params}, jnp.asarray(x[1:, :2600]), jnp.asarray(mask[1:, :2600])).logits
    assert np.abs(np.asarray(batched[1]) - np.asarray(alone[0])).max() <= 1e-5


def test_jit_and_eager_agree(tmp_path):
    save_tiny(tmp_path, "large")
    config, params = load_converted(tmp_path)
    model = HubertForSequenceClassification(config)
    x, mask = map(jnp.asarray, padded_batch())
    eager = model.apply({"params": params}, x, mask).logits
    jitted = jax.jit(lambda p, a, m: model.apply({"params": p}, a, m).logits)(params, x, mask)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6)


def test_training_mode_is_random_but_reproducible(tmp_path):
    save_tiny(tmp_path, "large", mask_time_prob=0.3, mask_time_length=2, mask_feature_prob=0.2,
              mask_feature_length=4, layerdrop=0.3)
    config, params = load_converted(tmp_path)
    model = HubertForSequenceClassification(config)
    x, mask = map(jnp.asarray, padded_batch())
    run = lambda seed: model.apply({"params": params}, x, mask, deterministic=False,
                                   rngs={"dropout": jax.random.PRNGKey(seed)}).logits
    eval_logits = model.apply({"params": params}, x, mask).logits
    assert np.array_equal(np.asarray(run(1)), np.asarray(run(1)))
    assert not np.allclose(np.asarray(run(1)), np.asarray(run(2)))
    assert not np.allclose(np.asarray(run(1)), np.asarray(eval_logits))
