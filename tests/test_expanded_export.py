"""Expanded models to PyTorch and back: ZLL models via our module, zero_out models via stock transformers."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch

from converters.expanded_torch import ExpandedHubertForSequenceClassification, StrictLoadError
from converters.flax_to_torch import export
from converters.torch_io import read_source
from converters.torch_to_flax import config_for, convert
from exhubert_jax.expansion import expand
from test_expansion import TRAINED_CASES, assert_trees_equal, batch, cached_init, forward, tiny, trained

torch.set_num_threads(2)


def torch_logits(model, audio, mask):
    """Logits of a PyTorch model (ours returns a dict, transformers an output object)."""
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(audio)), attention_mask=torch.from_numpy(np.array(mask)).long())
    return (out["logits"] if isinstance(out, dict) else out.logits).numpy()


def load_torch(directory, style):
    """Load an exported directory with the class its config.json names."""
    if style == "zll":
        return ExpandedHubertForSequenceClassification.from_pretrained(directory)
    from transformers import HubertForSequenceClassification
    return HubertForSequenceClassification.from_pretrained(directory).eval()


@pytest.mark.parametrize("style,copies,stable", TRAINED_CASES)
def test_export_parity_and_round_trip(tmp_path, style, copies, stable):
    run = trained(style, copies, stable)
    params, config = run["history"][-1], run["config"]
    if style == "zll":
        assert np.abs(np.asarray(params["hubert"]["encoder"]["expansion"]["zll"]["kernel"])).min() >= 0
        assert np.any(np.asarray(params["hubert"]["encoder"]["expansion"]["zll"]["kernel"]))
    out = export(params, config, tmp_path / "torch")
    hf = json.loads((out / "config.json").read_text())
    assert hf["num_hidden_layers"] == config.total_layers
    assert hf["architectures"] == ["ExpandedHubertForSequenceClassification" if style == "zll"
                                   else "HubertForSequenceClassification"]
    audio, mask, _ = batch()
    ours = np.asarray(forward(config, params, False).logits)
    theirs = torch_logits(load_torch(out, style), audio, mask)
    assert np.max(np.abs(ours - theirs)) <= 1e-4
    state, hf_config = read_source(out)
    back_config = config_for(hf_config, state, None)
    assert back_config == config
    back, _ = convert(state, back_config)
    assert_trees_equal(back, jax.tree.map(np.asarray, params))


@pytest.mark.parametrize("stable,copies,weighted", [(True, 2, True), (False, 1, False)])
def test_zll_parity_with_random_zlls(tmp_path, stable, copies, weighted):
    config = tiny(stable, use_weighted_layer_sum=weighted)
    params, config, _ = expand(cached_init(config, 4), config, copies=copies)
    rng = np.random.default_rng(0)
    zll = params["hubert"]["encoder"]["expansion"]["zll"]
    zll = jax.tree.map(lambda x: 0.05 * rng.standard_normal(x.shape).astype(np.float32), zll)
    params["hubert"]["encoder"]["expansion"]["zll"] = zll
    if weighted:
        params["layer_weights"] = rng.standard_normal(1 + config.total_layers).astype(np.float32)
    model = ExpandedHubertForSequenceClassification.from_pretrained(export(params, config, tmp_path))
    audio, mask, _ = batch()
    ours = forward(config, params)
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(audio)), torch.from_numpy(np.array(mask)).long(),
                    output_hidden_states=True)
    assert np.max(np.abs(np.asarray(ours.logits) - out["logits"].numpy())) <= 1e-4
    m = np.asarray(ours.frame_mask)[None, ..., None]
    theirs = np.stack([h.numpy() for h in out["hidden_states"]])
    assert np.max(np.abs(np.where(m, np.asarray(ours.hidden_states) - theirs, 0))) <= 1e-4


def test_strict_loading(tmp_path):
    config = tiny(True)
    params, config, _ = expand(cached_init(config, 0), config, copies=1)
    out = export(params, config, tmp_path)
    model = ExpandedHubertForSequenceClassification.from_pretrained(out)
    assert sorted(k for k in model.state_dict() if ".zll." in k) == [
        "hubert.encoder.zll.1.bias", "hubert.encoder.zll.1.weight", "hubert.encoder.zll.3.bias",
        "hubert.encoder.zll.3.weight"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.pop("hubert.encoder.zll.3.weight")
    state["hubert.encoder.zll.2.weight"] = torch.zeros(32, 32)
    with pytest.raises(StrictLoadError, match=r"zll\.3\.weight.*zll\.2\.weight"):
        model.load_strict(state)
    model.save_pretrained(tmp_path / "again")
    again = ExpandedHubertForSequenceClassification.from_pretrained(tmp_path / "again")
    for k, v in again.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
