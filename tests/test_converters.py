"""PyTorch <-> Flax conversion: every source layout, key coverage, exact round trips, clear errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import HubertForSequenceClassification as TorchSeqCls

from converters import flax_to_torch, torch_to_flax
from converters.mapping import CheckpointMismatch, params_to_state_dict
from converters.torch_io import SourceError, read_source
from exhubert_jax import from_pretrained, save_pretrained
from exhubert_jax.model.hubert import HubertForSequenceClassification
from exhubert_jax.pretrained import CheckpointError
from hf_models import WEIGHT_NORM_NEW_TO_OLD, padded_batch, rename_keys, save_tiny, torch_forward

jax.config.update("jax_default_matmul_precision", "highest")


def flax_logits(path, x, mask):
    model, params = from_pretrained(path)
    return np.asarray(model.apply({"params": params}, jnp.asarray(x), jnp.asarray(mask)).logits)


def old_style(state: dict) -> dict:
    """Rename torch>=2.1 weight-norm keys to the old weight_g/weight_v names."""
    return rename_keys(state, WEIGHT_NORM_NEW_TO_OLD)


@pytest.mark.parametrize("source", ["safetensors", "bin", "sharded", "old_weight_norm_bin", "bare_file"])
def test_torch_to_flax_sources_reproduce_logits(tmp_path, source):
    src = tmp_path / "hf"
    torch_model = save_tiny(src, "large", safe=source != "bin")
    args = [str(src), str(tmp_path / "flax")]
    if source == "sharded":
        torch_model.save_pretrained(src, max_shard_size="20KB")
        (src / "model.safetensors").unlink(missing_ok=True)
        assert (src / "model.safetensors.index.json").exists()
    elif source == "old_weight_norm_bin":
        state = old_style(load_file(src / "model.safetensors"))
        assert any(k.endswith("weight_g") for k in state)
        (src / "model.safetensors").unlink()
        torch.save(state, src / "pytorch_model.bin")
    elif source == "bare_file":
        bare = tmp_path / "weights.safetensors"
        save_file({k.removeprefix("hubert."): v for k, v in load_file(src / "model.safetensors").items()}, bare)
        args = [str(bare), str(tmp_path / "flax"), "--config", str(src / "config.json")]
    assert torch_to_flax.main(args) == 0
    x, mask = padded_batch()
    want, _ = torch_forward(torch_model, x, mask)
    assert np.abs(flax_logits(tmp_path / "flax", x, mask) - want).max() < 1e-5


def test_ctc_checkpoint_drops_lm_head_and_initialises_emotion_head(tmp_path, capsys):
    save_tiny(tmp_path / "ctc", "large", head="ctc")
    assert torch_to_flax.main([str(tmp_path / "ctc"), str(tmp_path / "flax")]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert sorted(summary["dropped"]) == ["lm_head.bias", "lm_head.weight"]
    assert set(summary["initialised"]) == {"classifier/bias", "classifier/kernel", "projector/bias",
                                           "projector/kernel"}
    model, _ = from_pretrained(tmp_path / "flax")
    assert model.config.num_labels == 6 and model.config.label_names[0] == "low_negative"


def test_hubert_model_checkpoint_without_prefix(tmp_path):
    save_tiny(tmp_path / "enc", "base", head="model")
    state, hf = read_source(tmp_path / "enc")
    assert not any(k.startswith("hubert.") for k in state)
    assert torch_to_flax.main([str(tmp_path / "enc"), str(tmp_path / "flax")]) == 0


@pytest.mark.parametrize("layout", ["large", "base"])
def test_flax_to_torch_loads_in_stock_transformers_without_key_warnings(tmp_path, layout):
    torch_model = save_tiny(tmp_path / "hf", layout)
    assert torch_to_flax.main([str(tmp_path / "hf"), str(tmp_path / "flax")]) == 0
    assert flax_to_torch.main([str(tmp_path / "flax"), str(tmp_path / "back")]) == 0
    loaded, info = TorchSeqCls.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert set(loaded.state_dict()) == set(torch_model.state_dict())
    x, mask = padded_batch()
    mask = mask if layout == "large" else np.ones_like(mask)
    got, _ = torch_forward(loaded.eval(), x, mask)
    assert np.abs(got - flax_logits(tmp_path / "flax", x, mask)).max() < 1e-5


def test_round_trip_is_exact(tmp_path):
    save_tiny(tmp_path / "hf", "large")
    original = {k: v.numpy() for k, v in load_file(tmp_path / "hf" / "model.safetensors").items()}
    torch_to_flax.main([str(tmp_path / "hf"), str(tmp_path / "f1")])
    flax_to_torch.main([str(tmp_path / "f1"), str(tmp_path / "t1")])
    torch_to_flax.main([str(tmp_path / "t1"), str(tmp_path / "f2")])
    back = {k: v.numpy() for k, v in load_file(tmp_path / "t1" / "model.safetensors").items()}
    assert set(back) == set(original)
    for k in original:
        assert np.array_equal(back[k], original[k]), k
    _, p1 = from_pretrained(tmp_path / "f1")
    _, p2 = from_pretrained(tmp_path / "f2")
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_missing_key_is_named(tmp_path, capsys):
    save_tiny(tmp_path / "hf", "large")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    del state["hubert.encoder.layers.1.attention.q_proj.weight"]
    save_file(state, tmp_path / "hf" / "model.safetensors")
    assert torch_to_flax.main([str(tmp_path / "hf"), str(tmp_path / "flax")]) == 2
    assert "hubert.encoder.layers.1.attention.q_proj.weight" in capsys.readouterr().err


def test_misshaped_key_names_both_shapes(tmp_path, capsys):
    save_tiny(tmp_path / "hf", "large")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    state["hubert.feature_projection.projection.weight"] = torch.zeros(32, 20)
    save_file(state, tmp_path / "hf" / "model.safetensors")
    assert torch_to_flax.main([str(tmp_path / "hf"), str(tmp_path / "flax")]) == 2
    err = capsys.readouterr().err
    assert "hubert.feature_projection.projection.weight" in err and "(32, 20)" in err and "(32, 24)" in err


def test_unexpected_encoder_key_is_an_error(tmp_path):
    save_tiny(tmp_path / "hf", "large", num_hidden_layers=3)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["num_hidden_layers"] = 2
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    state, hf = read_source(tmp_path / "hf")
    config = torch_to_flax.config_for(hf, state, None)
    with pytest.raises(CheckpointMismatch, match=r"hubert\.encoder\.layers\.2\."):
        torch_to_flax.convert(state, config)


def test_corrupt_weight_file_is_named(tmp_path):
    save_tiny(tmp_path / "hf", "large")
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(SourceError, match="model.safetensors"):
        read_source(tmp_path / "hf")


def test_unknown_hf_config_field_is_refused(tmp_path, capsys):
    save_tiny(tmp_path / "hf", "large")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["conv_pos_batch_norm"] = True
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    assert torch_to_flax.main([str(tmp_path / "hf"), str(tmp_path / "flax")]) == 2
    assert "conv_pos_batch_norm" in capsys.readouterr().err


def test_from_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    save_tiny(tmp_path / "hf", "large")
    with pytest.raises(CheckpointError, match="torch_to_flax"):
        from_pretrained(tmp_path / "hf")


def test_save_pretrained_rejects_params_of_another_config(tmp_path):
    save_tiny(tmp_path / "hf", "large")
    state, hf = read_source(tmp_path / "hf")
    config = torch_to_flax.config_for(hf, state, None)
    params, _ = torch_to_flax.convert(state, config)
    with pytest.raises(CheckpointError, match="num_labels|classifier"):
        save_pretrained(tmp_path / "x", config.replace(num_labels=3), params)


def test_state_dict_keys_cover_transformers_exactly(tmp_path):
    torch_model = save_tiny(tmp_path / "hf", "base", use_weighted_layer_sum=True)
    state, hf = read_source(tmp_path / "hf")
    config = torch_to_flax.config_for(hf, state, None)
    params, report = torch_to_flax.convert(state, config)
    assert sorted(report.used) == sorted(torch_model.state_dict()) and not report.dropped
    assert set(params_to_state_dict(params, config)) == set(torch_model.state_dict())
    model = HubertForSequenceClassification(config)
    assert jax.tree.structure(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4000)))["params"]) == \
        jax.tree.structure(params)
