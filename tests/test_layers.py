"""Building blocks: the custom-gradient grouped conv, conv output lengths, SpecAugment masks."""

import jax
import jax.numpy as jnp
import numpy as np

from exhubert_jax.model.config import preset
from exhubert_jax.model.layers import _grouped_conv, conv_output_lengths, grouped_conv, spec_augment_time_mask

jax.config.update("jax_default_matmul_precision", "highest")


def test_grouped_conv_gradients_equal_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((4, 2, 8)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((2, 10, 8)), jnp.float32)
    loss = lambda conv: (lambda a, k: jnp.sum(conv(a, k, 4) * probe))
    np.testing.assert_allclose(grouped_conv(x, kernel, 4), _grouped_conv(x, kernel, 4), atol=1e-6)
    ours = jax.grad(loss(grouped_conv), argnums=(0, 1))(x, kernel)
    reference = jax.grad(loss(_grouped_conv), argnums=(0, 1))(x, kernel)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_conv_output_lengths_follow_the_conv_formula():
    cfg = preset("base")
    assert int(conv_output_lengths(cfg, jnp.asarray(48000))) == 149  # 3 s at 16 kHz
    assert int(conv_output_lengths(cfg, jnp.asarray(400))) == 1  # the shortest input with one frame


def test_time_mask_spans_stay_inside_each_utterance():
    lengths = jnp.asarray([50, 20])
    mask = np.asarray(spec_augment_time_mask(jax.random.PRNGKey(0), lengths, 50, 0.5, 5, 2))
    assert mask[0].sum() >= 5 and mask[1].sum() >= 5
    assert not mask[1, 20:].any()
