"""Expanded models to PyTorch and back: ZLL models as self-contained trust_remote_code exports, zero_out models via
stock transformers."""

from __future__ import annotations

import ast
import json
import shutil

import jax
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForAudioClassification, HubertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from converters import flax_to_torch
from converters.flax_to_torch import export
from converters.torch_io import read_source
from converters.torch_to_flax import config_for, convert
from converters.zll_export import CODE_FILES, ExportConfigError, hubert_config_dict
from exhubert_jax.model.expansion import expand
from test_expansion import TRAINED_CASES, assert_trees_equal, batch, cached_init, forward, tiny, trained

torch.set_num_threads(2)


def torch_logits(model, audio, mask):
    """Logits of a PyTorch model."""
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(audio)), attention_mask=torch.from_numpy(np.array(mask)).long())
    return out.logits.numpy()


def load_torch(directory, style):
    """Load an export the way a user would: ZLL models through their own code, the others as stock HuBERT."""
    if style == "zll":
        return AutoModelForAudioClassification.from_pretrained(directory, trust_remote_code=True)
    return HubertForSequenceClassification.from_pretrained(directory).eval()


def random_zll_model(copies=1, stable=True, weighted=False, seed=0, style="zll"):
    """A tiny expanded model whose layout Linears (and layer weights) are random, so every Linear matters."""
    config = tiny(stable, use_weighted_layer_sum=weighted)
    params, config, _ = expand(cached_init(config, 4), config, copies=copies, style=style)
    rng = np.random.default_rng(seed)
    expansion = params["hubert"]["encoder"]["expansion"]
    for name in ("zll", "gate"):
        if name in expansion:
            expansion[name] = jax.tree.map(lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(np.float32),
                                           expansion[name])
    if weighted:
        params["layer_weights"] = rng.standard_normal(1 + config.total_layers).astype(np.float32)
    return params, config


@pytest.mark.parametrize("style,copies,stable", TRAINED_CASES)
def test_export_parity_and_round_trip(tmp_path, style, copies, stable):
    run = trained(style, copies, stable)
    params, config = run["history"][-1], run["config"]
    if style == "zll":
        assert np.any(np.asarray(params["hubert"]["encoder"]["expansion"]["zll"]["kernel"]))
    out = export(params, config, tmp_path / "torch")
    hf = json.loads((out / "config.json").read_text())
    if style == "zll":
        assert hf["model_type"] == "exhubert" and hf["architectures"] == ["ExHubertForSequenceClassification"]
        assert hf["encoder"]["num_hidden_layers"] == config.total_layers and hf["zll_layers"] == [1, 3]
        written = ["README.md", "config.json", "model.safetensors", "preprocessor_config.json", *CODE_FILES]
        assert sorted(p.name for p in out.iterdir()) == sorted(written)
    else:
        assert hf["architectures"] == ["HubertForSequenceClassification"]
        assert hf["num_hidden_layers"] == config.total_layers
    audio, mask, _ = batch()
    ours = np.asarray(forward(config, params, False).logits)
    assert np.max(np.abs(ours - torch_logits(load_torch(out, style), audio, mask))) <= 1e-4
    state, hf_config = read_source(out)
    back_config = config_for(hf_config, state, None)
    assert back_config == config
    back, _ = convert(state, back_config)
    assert_trees_equal(back, jax.tree.map(np.asarray, params))


@pytest.mark.parametrize("style,stable,copies,weighted", [("zll", True, 2, True), ("zll", False, 1, False),
                                                          ("gated", False, 2, False)])
def test_zll_parity_with_random_zlls(tmp_path, style, stable, copies, weighted):
    params, config = random_zll_model(copies, stable, weighted, style=style)
    model = AutoModelForAudioClassification.from_pretrained(export(params, config, tmp_path), trust_remote_code=True)
    audio, mask, _ = batch()
    ours = forward(config, params)
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(audio)), torch.from_numpy(np.array(mask)).long(),
                    output_hidden_states=True)
    assert isinstance(out, SequenceClassifierOutput)
    assert np.max(np.abs(np.asarray(ours.logits) - out.logits.numpy())) <= 1e-4
    m = np.asarray(ours.frame_mask)[None, ..., None]
    theirs = np.stack([h.numpy() for h in out.hidden_states])
    assert np.max(np.abs(np.where(m, np.asarray(ours.hidden_states) - theirs, 0))) <= 1e-4


def test_zll_export_is_refused_as_plain_hubert(tmp_path):
    params, config = random_zll_model()
    out = export(params, config, tmp_path)
    with pytest.raises(RuntimeError, match="mismatch"):
        HubertForSequenceClassification.from_pretrained(out)
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=False)


def test_zll_export_code_is_self_contained(tmp_path):
    params, config = random_zll_model()
    out = export(params, config, tmp_path / "a")
    for name in CODE_FILES:
        tree = ast.parse((out / name).read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        assert roots <= {"__future__", "torch", "transformers", "huggingface_hub"}, (name, roots)
    moved = shutil.copytree(out, tmp_path / "elsewhere")  # the directory alone is the model
    model = AutoModelForAudioClassification.from_pretrained(moved, trust_remote_code=True)
    audio, mask, _ = batch()
    assert np.max(np.abs(np.asarray(forward(config, params, False).logits) - torch_logits(model, audio, mask))) <= 1e-4


def test_strict_loading_and_transformers_save_round_trip(tmp_path):
    params, config = random_zll_model()
    out = export(params, config, tmp_path / "export")
    model = AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=True)
    model.save_pretrained(tmp_path / "again")  # transformers writes the code and auto_map back
    state, hf_config = read_source(tmp_path / "again")
    back, _ = convert(state, config_for(hf_config, state, None))
    assert_trees_equal(back, jax.tree.map(np.asarray, params))
    weights = load_file(out / "model.safetensors")
    weights.pop("hubert.encoder.zll.3.weight")
    weights["hubert.encoder.zll.2.weight"] = torch.zeros(32, 32)
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"zll\.3\.weight.*zll\.2\.weight") as error:
        AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=True)
    assert type(error.value).__name__ == "StrictLoadError"  # the class of the export's own copy of the code


def test_fresh_torch_model_starts_with_zero_zlls(tmp_path):
    params, config = random_zll_model()
    model = AutoModelForAudioClassification.from_pretrained(export(params, config, tmp_path), trust_remote_code=True)
    fresh = type(model)(model.config)
    zll = {k: v for k, v in fresh.state_dict().items() if ".zll." in k}
    assert sorted(zll) == ["hubert.encoder.zll.1.bias", "hubert.encoder.zll.1.weight", "hubert.encoder.zll.3.bias",
                           "hubert.encoder.zll.3.weight"]
    assert all(not v.any() for v in zll.values())


def test_inconsistent_zll_config_is_named(tmp_path):
    params, config = random_zll_model()
    hf = json.loads((export(params, config, tmp_path) / "config.json").read_text())
    with pytest.raises(ExportConfigError, match="zll_layers"):
        hubert_config_dict({**hf, "zll_layers": [0, 2]})


def test_export_accepts_a_training_workdir_and_writes_readable_files(tmp_path, capsys):
    from exhubert_jax import save_pretrained
    params, config = random_zll_model()
    save_pretrained(tmp_path / "run" / "final", config, params)
    assert flax_to_torch.main([str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    assert "final/" in capsys.readouterr().err
    for f in (tmp_path / "out").iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f
    assert flax_to_torch.main([str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_new_layout_is_one_entry_in_expansion_spec(tmp_path, monkeypatch):
    """Following docs/architecture.md literally: a layout added to expansion_layout.LAYOUTS alone (an
    identity-initialised Linear after each copy, no skip; none after the originals) reaches the model, init,
    freezing, export and transformers."""
    from exhubert_jax.model import expansion_layout as spec
    from exhubert_jax.model.param_labels import param_labels

    monkeypatch.setitem(spec.LAYOUTS, "copy_gate", spec.Layout(spec.SlotRule(), spec.SlotRule("identity")))
    params, config = random_zll_model(copies=2, style="copy_gate")
    assert set(params["hubert"]["encoder"]["expansion"]) == {"layers", "zll"}
    assert param_labels(params, config)["hubert"]["encoder"]["expansion"]["zll"]["kernel"] == "trainable"
    out = export(params, config, tmp_path / "pt")
    hf = json.loads((out / "config.json").read_text())
    assert hf["gate_layers"] == [1, 2, 4, 5] and hf["zll_layers"] == []
    model = AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=True)
    audio, mask, _ = batch()
    ours = np.asarray(forward(config, params).logits)
    assert np.max(np.abs(ours - torch_logits(model, audio, mask))) <= 1e-4
    state, hf_config = read_source(out)
    back_config = config_for(hf_config, state, None)
    assert back_config == config
    assert_trees_equal(convert(state, back_config)[0], jax.tree.map(np.asarray, params))
