"""The regression head through the model's life: saved and reloaded, exported to transformers (stock
HubertForSequenceClassification for plain models, the shipped code for ZLL-expanded ones) and converted back with
its regression outputs to 1e-4, kept exact by Backbone Block Expansion, and trained under adapters."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import torch
from transformers import AutoModelForAudioClassification, HubertForSequenceClassification as TorchHubert

from converters.flax_to_torch import export
from converters.mapping import state_dict_to_params
from converters.torch_io import read_source
from converters.torch_to_flax import config_for
from exhubert_jax.adapters import apply_spec, build
from exhubert_jax.evaluation import dimensional as dm
from exhubert_jax.model.config import preset
from exhubert_jax.model.expansion import expand
from exhubert_jax.model.hubert import init_params, param_shapes
from exhubert_jax.pretrained import from_pretrained, save_pretrained
from hf_models import padded_batch

torch.set_num_threads(2)
HEADS = {"both": 6, "dimensional": 0}


@functools.lru_cache(maxsize=None)
def _forward(config):
    """The jitted forward of a config (compiled once per config and batch shape)."""
    model = build(config)

    def forward(params, x, mask):
        out = model.apply({"params": params}, x, mask)
        return out.logits, out.values

    return jax.jit(forward)


def model_outputs(config, params, x, mask):
    """(logits, regression values) of our model."""
    logits, values = _forward(config)(params, x, mask)
    return np.asarray(logits), np.asarray(values)


@functools.lru_cache(maxsize=None)
def _initial(num_labels):
    config = preset("tiny", num_labels=num_labels, label_names=None, dimensions=dm.DIMENSIONS, mask_time_prob=0.0)
    params = jax.device_get(init_params(config, 3))
    rng = np.random.default_rng(0)  # a head far from its init, so a swapped row would show
    params["regressor"] = {k: v + rng.standard_normal(v.shape).astype(np.float32) for k, v in params["regressor"].items()}
    return config, params


def tiny_dims(num_labels):
    """A tiny model with a regression head (and num_labels classes), initialised once per head layout."""
    config, params = _initial(num_labels)
    return config, jax.tree.map(np.copy, params)


def converted_back(directory):
    """(params, config) of a PyTorch export read back; every head tensor must be in it (none initialised)."""
    state, hf = read_source(str(directory))
    config = config_for(hf, state, None)
    return state_dict_to_params(state, config, param_shapes(config))[0], config


@pytest.mark.parametrize("heads", sorted(HEADS))
def test_save_export_and_back_keep_the_regression_outputs(tmp_path, heads):
    config, params = tiny_dims(HEADS[heads])
    x, mask = padded_batch((4000, 2600), seed=1)
    logits, values = model_outputs(config, params, x, mask)
    model, loaded = from_pretrained(save_pretrained(tmp_path / "ours", config, params))
    assert model.config == config
    assert np.array_equal(model_outputs(config, loaded, x, mask)[1], values)

    torch_model = TorchHubert.from_pretrained(export(params, config, tmp_path / "hf")).eval()
    assert torch_model.config.problem_type == ("regression" if heads == "dimensional" else None)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).logits.numpy()
    n = config.num_labels
    assert np.max(np.abs(out[:, n:] - values)) < 1e-4 and np.max(np.abs(out[:, :n] - logits), initial=0) < 1e-4
    back, back_config = converted_back(tmp_path / "hf")
    assert (back_config.num_labels, back_config.dimensions) == (n, dm.DIMENSIONS)
    assert np.max(np.abs(model_outputs(back_config, back, x, mask)[1] - values)) < 1e-5


def grown_model():
    """A both-heads model, its (B, 3) regression outputs on a batch, and its ZLL expansion."""
    config, params = tiny_dims(6)
    x, mask = padded_batch((4000, 2600), seed=2)
    _, values = model_outputs(config, params, x, mask)
    grown, grown_config, labels = expand(params, config, copies=1, style="zll")
    return x, mask, values, grown, grown_config, labels


def test_expansion_keeps_the_regression_head_exact():
    x, mask, values, grown, grown_config, labels = grown_model()
    assert np.array_equal(model_outputs(grown_config, grown, x, mask)[1], values)
    assert labels["regressor"]["kernel"] == "trainable"


@pytest.mark.slow  # ~6 s: the shipped PyTorch code of a ZLL export, loaded through transformers
def test_expanded_export_keeps_the_regression_outputs(tmp_path):
    x, mask, values, grown, grown_config, _ = grown_model()
    torch_model = AutoModelForAudioClassification.from_pretrained(export(grown, grown_config, tmp_path / "pt"),
                                                                  trust_remote_code=True).eval()
    with torch.no_grad():
        out = torch_model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask).long()).logits.numpy()
    assert np.max(np.abs(out[:, 6:] - values)) < 1e-4
    back, back_config = converted_back(tmp_path / "pt")
    assert back_config.dimensions == dm.DIMENSIONS and back_config.expansion_style == "zll"


@pytest.mark.parametrize("spec", [pytest.param("lora:r=2", marks=pytest.mark.slow), "bitfit"])
def test_adapters_start_as_identity_and_train_the_regressor(spec):
    config, params = tiny_dims(0)
    x, mask = padded_batch((3000, 2000), seed=3)
    _, values = model_outputs(config, params, x, mask)
    adapted, adapted_config, labels = apply_spec(params, config, spec)
    assert np.allclose(model_outputs(adapted_config, adapted, x, mask)[1], values, atol=1e-6)
    assert labels["regressor"]["kernel"] == "trainable"


@pytest.mark.slow  # ~10 s: torch.export and onnxruntime
@pytest.mark.parametrize("heads", sorted(HEADS))
def test_onnx_export_gives_the_regression_values_after_the_classes(tmp_path, heads):
    from converters.onnx_io import LOGITS, run, session
    from converters.to_onnx import export_onnx

    config, params = tiny_dims(HEADS[heads])
    export_onnx(params, config, tmp_path / "m.onnx")  # verifies against the JAX model on an unseen shape
    x, mask = padded_batch((4000, 2600), seed=4)
    _, values = model_outputs(config, params, x, mask)
    got = run(session(tmp_path / "m.onnx"), x, mask)[LOGITS]
    assert got.shape == (2, config.num_labels + 3) and np.max(np.abs(got[:, config.num_labels:] - values)) < 1e-4


@pytest.mark.slow  # ~5 s each: LoRA applied, exported for peft and read back
@pytest.mark.parametrize("heads", sorted(HEADS))
def test_peft_export_round_trip_keeps_the_regressor(tmp_path, heads):
    from converters.peft_io import export_peft, import_peft

    config, params = tiny_dims(HEADS[heads])
    adapted, adapted_config, _ = apply_spec(params, config, "lora:r=2")
    rng = np.random.default_rng(5)
    adapted = jax.tree.map(lambda v: v + 0.01 * rng.standard_normal(np.shape(v)).astype(np.float32), adapted)
    export_peft(adapted, adapted_config, tmp_path / "ad")
    back, _ = import_peft(jax.tree.map(np.zeros_like, params), config, tmp_path / "ad")  # the head comes from it
    for name in ("regressor", "projector") + (("classifier",) if HEADS[heads] else ()):
        assert np.array_equal(back[name]["kernel"], adapted[name]["kernel"]), name
