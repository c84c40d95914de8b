"""Runtime options that must not change the numbers: attention backend, scan unrolling, the huge-page restart."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exhubert_jax.model.config import preset
from exhubert_jax.model.expansion import expand
from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params
from exhubert_jax.process.huge_pages import TUNABLE, hugepage_env
from hf_models import padded_batch

jax.config.update("jax_default_matmul_precision", "highest")


def logits(config, params, **options):
    x, mask = padded_batch()
    model = HubertForSequenceClassification(config, **options)
    out = model.apply({"params": params}, jnp.asarray(x), jnp.asarray(mask), output_hidden_states=True)
    return np.asarray(out.logits), np.asarray(out.hidden_states)


@pytest.fixture(scope="module")
def expanded():
    config = preset("tiny", num_hidden_layers=3, layerdrop=0.0)
    params = init_params(config, 0)
    return expand(params, config, copies=1, style="zll")[:2]


def test_explicit_xla_attention_equals_the_default(expanded):
    params, config = expanded
    want_logits, want_hidden = logits(config, params)
    got_logits, got_hidden = logits(config, params, attention_implementation="xla")
    np.testing.assert_array_equal(got_logits, want_logits)
    np.testing.assert_array_equal(got_hidden, want_hidden)


@pytest.mark.parametrize("unroll", [2, 3])
def test_scan_unroll_keeps_logits_and_hidden_states(expanded, unroll):
    params, config = expanded
    want_logits, want_hidden = logits(config, params)
    got_logits, got_hidden = logits(config, params, scan_unroll=unroll)
    np.testing.assert_allclose(got_logits, want_logits, atol=1e-6)
    np.testing.assert_allclose(got_hidden, want_hidden, atol=1e-6)


def test_fused_attention_without_dropout_support_is_refused_in_training():
    config = preset("tiny", attention_dropout=0.1)
    params = init_params(config, 0)
    model = HubertForSequenceClassification(config, attention_implementation="xla")
    x = jnp.zeros((1, 4000))
    with pytest.raises(ValueError, match="attention_dropout=0"):
        model.apply({"params": params}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})


def test_unknown_attention_implementation_is_an_error():
    config = preset("tiny")
    params = init_params(config, 0)
    with pytest.raises(ValueError, match="attention implementation must be one of"):
        HubertForSequenceClassification(config, attention_implementation="flash").apply({"params": params},
                                                                                        jnp.zeros((1, 4000)))


def test_hugepage_restart_environment():
    env = hugepage_env({"PATH": "/bin"})
    if env is not None:  # Linux, glibc >= 2.35 and THP not disabled
        assert env["GLIBC_TUNABLES"] == TUNABLE and env["PATH"] == "/bin"
        merged = hugepage_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
        assert merged["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
    assert hugepage_env({"GLIBC_TUNABLES": TUNABLE}) is None
    assert hugepage_env({"EXHUBERT_NO_HUGEPAGES": "1"}) is None
