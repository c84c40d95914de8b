"""The released ExHuBERT layout: import through the CLI, exact logits, bitwise round trip, transformers-5 export with
the authors' methods, transfer, and the paper's Table 2 counts."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForAudioClassification

from converters import flax_to_torch, torch_to_flax
from converters.released import ReleasedLayoutError
from exhubert_jax import from_pretrained
from exhubert_jax.adapters import build
from exhubert_jax.model.config import EMOTION_CLASSES, preset
from exhubert_jax.model.expansion import expand, table2
from exhubert_jax.model.hubert import init_params
from exhubert_jax.model.param_labels import count, param_labels
from hf_models import WEIGHT_NORM_NEW_TO_OLD, padded_batch, rename_keys
from released_replica import build_replica, save_released

jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)
TOL = 1e-4


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny replica with random weights (gates included), saved in the released layout and converted by the CLI."""
    root = tmp_path_factory.mktemp("released")
    replica = build_replica()
    save_released(replica, root / "hub")
    assert torch_to_flax.main([str(root / "hub"), str(root / "jax")]) == 0
    return replica, root


def replica_logits(replica, audio, mask):
    """The replica's logits (mask None: no attention mask, as the model card calls it)."""
    with torch.no_grad():
        return replica(torch.from_numpy(audio), None if mask is None else torch.from_numpy(mask)).numpy()


@pytest.mark.parametrize("masked", [True, False])
def test_converted_logits_equal_the_replica(released, masked):
    replica, root = released
    model, params = from_pretrained(root / "jax")
    assert (model.config.expansion_copies, model.config.expansion_style) == (1, "gated")
    assert model.config.num_hidden_layers == 2 and model.config.label_names == EMOTION_CLASSES
    gates = np.asarray(params["hubert"]["encoder"]["expansion"]["gate"]["kernel"])
    assert not np.allclose(gates, np.eye(gates.shape[-1])) and np.any(gates)  # random gates, not identity or zero
    audio, mask = padded_batch((4000, 3100, 2207))
    ours = model.apply({"params": params}, audio, mask.astype(np.int32) if masked else None).logits
    assert np.max(np.abs(np.asarray(ours) - replica_logits(replica, audio, mask if masked else None))) <= TOL


def test_safetensors_source_and_report(tmp_path, capsys):
    replica = build_replica(seed=1)
    save_released(replica, tmp_path / "hub", safe=True)
    assert torch_to_flax.main([str(tmp_path / "hub"), str(tmp_path / "jax")]) == 0
    out = capsys.readouterr().out
    assert "ignored config key auto_map" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["style"] == "gated" and summary["layers"] == 4 and summary["ignored_config"] == ["auto_map"]
    assert summary["used"] == len(replica.state_dict()) and summary["initialised"] == []
    model, params = from_pretrained(tmp_path / "jax")
    audio, mask = padded_batch((3000, 2500))
    ours = model.apply({"params": params}, audio, mask.astype(np.int32)).logits
    assert np.max(np.abs(np.asarray(ours) - replica_logits(replica, audio, mask))) <= TOL


def test_round_trip_to_the_released_layout_is_bitwise(released, tmp_path):
    replica, root = released
    assert flax_to_torch.main([str(root / "jax"), str(tmp_path / "back"), "--layout", "released"]) == 0
    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    original = {k: v.numpy() for k, v in replica.released_state_dict().items()}
    assert set(back) == set(original)
    assert all(back[k].shape == original[k].shape and np.array_equal(back[k], original[k]) for k in original)
    hf = json.loads((tmp_path / "back" / "config.json").read_text())
    assert hf["model_type"] == "hubert" and hf["architectures"] == ["ExHuBERT"]
    assert hf["num_hidden_layers"] == 4 and "exhubert_expansion" not in hf
    strict = build_replica(seed=5)
    strict.load_state_dict({k: torch.from_numpy(v) for k, v in _torch_names(back).items()}, strict=True)


def _torch_names(state: dict) -> dict:
    """Released names -> the replica module's own (torch>=2.1 weight-norm parametrisation)."""
    return rename_keys(state, {old: new for new, old in WEIGHT_NORM_NEW_TO_OLD.items()})


def test_released_export_is_refused_for_other_layouts(tmp_path):
    config = preset("tiny")
    params, config, _ = expand(init_params(config, 0), config, copies=1, style="zll")
    with pytest.raises(ReleasedLayoutError, match="style 'gated' and 1 copy"):
        flax_to_torch.export(params, config, tmp_path, layout="released")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("damage,message", [
    ("drop", "hubert.encoder.layers.3.gate_bb_linear.weight is missing"),
    ("shape", "hubert.encoder.layers.1.gate_bb_linear.weight: checkpoint shape (32, 16)"),
    ("odd", "must come in (original, copy) pairs"),
])
def test_damaged_released_checkpoints_are_named(tmp_path, capsys, damage, message):
    replica = build_replica(seed=2)
    path = save_released(replica, tmp_path / "hub")
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    if damage == "drop":
        del state["hubert.encoder.layers.3.gate_bb_linear.weight"]
    elif damage == "shape":
        state["hubert.encoder.layers.1.gate_bb_linear.weight"] = torch.zeros(32, 16)
    else:
        state = {k: v for k, v in state.items() if not k.startswith("hubert.encoder.layers.3.")}
    torch.save(state, path / "pytorch_model.bin")
    assert torch_to_flax.main([str(path), str(tmp_path / "jax")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_transformers_export_matches_and_has_the_authors_methods(released, tmp_path):
    replica, root = released
    assert flax_to_torch.main([str(root / "jax"), str(tmp_path / "pt")]) == 0
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "pt", trust_remote_code=True).eval()
    audio, mask = padded_batch((4000, 3100, 2207))
    for m in (mask, None):
        with torch.no_grad():
            logits = model(torch.from_numpy(audio), attention_mask=None if m is None else torch.from_numpy(m)).logits
        assert np.max(np.abs(logits.numpy() - replica_logits(replica, audio, m))) <= TOL
    model.freeze_feature_encoder()
    model.freeze_og_encoder()
    ours, params = from_pretrained(root / "jax")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_originals = [n for n, p in model.named_parameters() if not p.requires_grad
                        and n.startswith(("hubert.encoder.layers.0.", "hubert.encoder.gate.0."))]
    assert frozen_originals and trainable == count(params, param_labels(params, ours.config, "original"))
    model.classifier = torch.nn.Linear(model.classifier.in_features, 3)
    out = model(torch.from_numpy(audio), labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3) and out.loss is not None and out.loss.requires_grad
    model.freeze_base_model()
    assert all(not p.requires_grad for p in model.hubert.parameters())


def test_a_model_card_style_script_runs_on_the_export(released, tmp_path):
    """The card's recipe: load with trust_remote_code, 3 s of audio padded with the feature extractor, no mask."""
    from transformers import Wav2Vec2FeatureExtractor

    replica, root = released
    assert flax_to_torch.main([str(root / "jax"), str(tmp_path / "pt")]) == 0
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "pt", trust_remote_code=True).eval()
    clip = np.random.default_rng(3).standard_normal(30000).astype(np.float32)
    inputs = extractor(clip, sampling_rate=16000, padding="max_length", max_length=48000, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(inputs["input_values"]).logits, dim=-1)[0].numpy()
    expected = replica_logits(replica, inputs["input_values"].numpy(), None)[0]
    assert np.allclose(probs, np.exp(expected) / np.exp(expected).sum(), atol=1e-5)
    assert model.config.id2label[int(probs.argmax())] in EMOTION_CLASSES


def test_gated_expansion_is_the_identity_at_init():
    for stable in (True, False):
        config = preset("tiny", layerdrop=0.0, do_stable_layer_norm=stable)
        params = init_params(config, 0)
        audio, mask = padded_batch((4000, 2500))
        plain = build(config).apply({"params": params}, audio, mask.astype(np.int32))
        new_params, new_config, labels = expand(params, config, copies=1, style="gated")
        grown = build(new_config).apply({"params": new_params}, audio,
                                                                  mask.astype(np.int32))
        assert np.max(np.abs(np.asarray(plain.logits) - np.asarray(grown.logits))) <= 1e-6
        assert labels["hubert"]["encoder"]["expansion"]["gate"]["kernel"] == "frozen"
        assert labels["hubert"]["encoder"]["expansion"]["zll"]["kernel"] == "trainable"


def test_table2_counts_are_the_papers():
    counts = {r["model"]: r["trainable"] for r in table2(preset("large"))}
    assert counts == {"HuBERT Large": 311_492_486, "ExHuBERT Large": 336_682_886,
                      "ExHuBERT XLarge": 664_182_662, "ExHuBERT Non-Frozen": 664_182_662}


def transfer_from_release(released, tmp_path) -> Path:
    """train.py --stage transfer --init <converted ExHuBERT> for 2 steps on a small demo-b; the demo data folder."""
    import train as cli
    from exhubert_jax.data.demo.synthetic import prepare_demo

    _, root = released
    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    argv = ["--stage", "transfer", "--corpus", "demo-b", "--data-dir", str(tmp_path / "data"), "--init",
            str(root / "jax"), "--workdir", str(tmp_path / "tr"), "--steps", "2", "--batch-size", "4",
            "--max-seconds", "0.5", "--eval-every", "2", "--quiet"]
    assert cli.main(argv) == 0
    return tmp_path / "data"


def test_transfer_from_the_converted_release_trains_copies_gates_and_head(released, tmp_path, capsys):
    """CNN, originals and their gates frozen; the count printed is what the paper's ExHuBERT Large row counts at
    full size."""
    transfer_from_release(released, tmp_path)
    model, params = from_pretrained(released[1] / "jax")
    frozen = ("hubert/feature_extractor/", "hubert/encoder/layers/", "hubert/encoder/expansion/gate/")
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    expected = sum(int(np.size(v)) for k, v in flat.items() if not k.startswith(frozen))
    assert json.loads((tmp_path / "tr" / "run.json").read_text())["trainable_params"] == expected  # what run.json records
    trained, after = from_pretrained(tmp_path / "tr" / "final")
    enc, enc_after = params["hubert"]["encoder"], after["hubert"]["encoder"]
    assert np.array_equal(enc["expansion"]["gate"]["kernel"], enc_after["expansion"]["gate"]["kernel"])
    assert np.array_equal(enc["layers"]["attention"]["q_proj"]["kernel"],
                          enc_after["layers"]["attention"]["q_proj"]["kernel"])
    assert not np.array_equal(enc["expansion"]["zll"]["kernel"], enc_after["expansion"]["zll"]["kernel"])
    assert trained.config.expansion_style == "gated"


@pytest.mark.slow
def test_the_release_and_its_transfer_evaluate(released, tmp_path):
    """evaluate.py on the converted release (the model card's 3 s input) and on its transferred workdir."""
    import evaluate

    data = transfer_from_release(released, tmp_path)
    for checkpoint, extra in ((released[1] / "jax", ["--input", "card"]), (tmp_path / "tr", [])):
        assert evaluate.main(["--corpus", "demo-b", "--checkpoint", str(checkpoint), "--data-dir", str(data),
                              "--bootstrap", "0", "--out", str(tmp_path / "eval"), *extra]) == 0


def test_bbe_then_lora_on_the_gated_layout_keeps_gates_frozen_and_exports(tmp_path):
    from exhubert_jax import adapters

    config = preset("tiny", layerdrop=0.0)
    params, config, labels = adapters.apply_spec(init_params(config, 0), config,
                                                 ["bbe:copies=1,style=gated", "lora:r=2,targets=q+v"])
    expansion = labels["hubert"]["encoder"]["expansion"]
    assert expansion["gate"]["kernel"] == "frozen" and expansion["zll"]["kernel"] == "trainable"
    assert expansion["layers"]["attention"]["q_proj"]["lora_b"] == "trainable"
    assert expansion["layers"]["attention"]["q_proj"]["kernel"] == "frozen"
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: np.asarray(x) + 0.02 * rng.standard_normal(np.shape(x)).astype(np.float32),
                          params)
    audio, mask = padded_batch((4000, 2500))
    ours = build(config).apply({"params": params}, audio, mask.astype(np.int32)).logits
    merged, merged_config = adapters.merge(params, config)
    model = AutoModelForAudioClassification.from_pretrained(flax_to_torch.export(merged, merged_config, tmp_path),
                                                            trust_remote_code=True).eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert np.max(np.abs(np.asarray(ours) - theirs)) <= TOL


def test_lora_on_the_converted_release_trains_lora_the_copies_linears_and_head(released):
    """LoRA after the (unrecorded) expansion of a converted release: the layout's Linears are expansion leaves and
    keep their labels (the copies' ZLLs train, the originals' gates stay frozen), the backbone freezes."""
    from exhubert_jax import adapters

    _, root = released
    model, params = from_pretrained(root / "jax")
    params, config, labels = adapters.apply_spec(params, model.config, "lora:r=2,targets=q+v")
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): lab
            for path, lab in jax.tree_util.tree_leaves_with_path(labels)}
    trainable = sorted({k for k, lab in flat.items() if lab == "trainable"})
    assert trainable and all("lora_" in k or k.startswith(("projector/", "classifier/", "hubert/encoder/expansion/zll/"))
                             for k in trainable)
    assert flat["hubert/encoder/expansion/gate/kernel"] == "frozen"
    assert any("expansion/layers" in k for k in trainable) and any(k.startswith("hubert/encoder/layers") for k in
                                                                      trainable)


def test_the_release_converts_and_trains_without_layerdrop(tmp_path, capsys):
    """The released config.json says layerdrop 0.1, its code never drops a layer: the conversion turns LayerDrop off
    and says so, a training-mode forward draws no LayerDrop (with the old 0.1 some keys skip a layer), a transfer
    step keeps it off, and a gated model that still has LayerDrop is refused unless --layerdrop asks for it."""
    from argparse import Namespace

    from exhubert_jax.training.stages import UsageError, with_layerdrop

    save_released(build_replica(seed=4, layerdrop=0.1), tmp_path / "hub")
    assert torch_to_flax.main([str(tmp_path / "hub"), str(tmp_path / "jax")]) == 0
    out = capsys.readouterr().out
    assert "ignored config key layerdrop: 0.1 in config.json" in out and "LayerDrop off" in out
    model, params = from_pretrained(tmp_path / "jax")
    assert model.config.layerdrop == 0.0
    audio, mask = padded_batch((4000, 3100))
    quiet = model.config.replace(mask_time_prob=0.0)  # no SpecAugment: LayerDrop is what is left to draw

    def differs(config) -> list[bool]:
        """For 16 dropout keys: whether a training-mode forward differs from the deterministic one."""
        net = build(config)
        want = np.asarray(net.apply({"params": params}, audio, mask.astype(np.int32)).logits)
        train = jax.jit(lambda key: net.apply({"params": params}, audio, mask.astype(np.int32), deterministic=False,
                                              rngs={"dropout": key}).logits)
        return [not np.allclose(want, train(jax.random.PRNGKey(k)), atol=1e-6) for k in range(16)]

    assert not any(differs(quiet)) and any(differs(quiet.replace(layerdrop=0.1)))
    # what a transfer step trains (run_training applies with_layerdrop; the slow test runs the transfer itself)
    assert with_layerdrop(Namespace(layerdrop=None), model).config.layerdrop == 0.0
    old = build(model.config.replace(layerdrop=0.1))  # a release converted before LayerDrop was turned off
    with pytest.raises(UsageError, match="--layerdrop 0 to train as they did"):
        with_layerdrop(Namespace(layerdrop=None), old)
    assert with_layerdrop(Namespace(layerdrop=0.1), old).config.layerdrop == 0.1
    assert with_layerdrop(Namespace(layerdrop=0.0), old).config.layerdrop == 0.0
