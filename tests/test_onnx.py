"""ONNX export: onnxruntime against our JAX model on shapes the export never saw, ONNX's checker, refusals."""

from __future__ import annotations

import contextlib
import io
import json

import jax
import numpy as np
import onnx
import pytest
import yaml
from flax.traverse_util import flatten_dict, unflatten_dict

from converters import to_onnx
from converters.onnx_io import EMBEDDING, LOGITS, OnnxInputError, jax_outputs, run, session
from exhubert_jax import adapters, from_pretrained, save_pretrained
from exhubert_jax.adapters import build
from exhubert_jax.model.config import preset
from exhubert_jax.model.hubert import init_params

jax.config.update("jax_default_matmul_precision", "highest")

BATCHES = (1, 3)
LENGTHS = (400, 4321, 11111)  # the export traced 2 x 16000 samples
TOL = 1e-4
QUICK_XLA = {"xla_backend_optimization_level": 0}  # many one-off shapes: compile fast, run slow
BASE_LAYOUT = dict(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False)


def noisy(params, seed, scale=0.1, where=lambda path: True):
    """Every selected leaf plus Gaussian noise, so that no leaf (head, ZLL, LoRA B) sits at its initial value."""
    rng = np.random.default_rng(seed)
    flat = flatten_dict(jax.tree.map(np.asarray, params))
    return unflatten_dict({k: v + scale * rng.standard_normal(v.shape).astype(np.float32) if where("/".join(k)) else v
                           for k, v in flat.items()})


def audio(batch, samples, seed=0):
    """Random audio; rows 1 and 2 padded to 3/4 and 1/2 of the width, with the matching attention mask."""
    rng = np.random.default_rng(seed + samples)
    mask = np.ones((batch, samples), np.int64)
    for i in range(1, batch):
        mask[i, samples - i * samples // 4:] = 0
    return rng.standard_normal((batch, samples)).astype(np.float32) * mask, mask


def assert_close(got, want, what):
    diff = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    assert diff <= TOL, f"{what}: max-abs difference {diff:.3g}"


def zll_lora(seed=2, **layout):
    """A tiny model expanded in the released ExHuBERT's gated layout (a Linear after every layer, a skip around the
    copies'; the ZLL layout's code paths plus the gates) with LoRA, its Linears and LoRA B random: (params, config)."""
    config = preset("tiny", layerdrop=0.0, **layout)
    params, config, _ = adapters.apply_spec(noisy(init_params(config, seed), seed), config,
                                            ["bbe:copies=1,style=gated", "lora:r=4,alpha=8,targets=q+v+ff2"])
    return noisy(params, seed + 1, where=lambda p: "/zll/" in p or "/gate/" in p or p.endswith("lora_b")), config


def export_cli(args):
    """Run the CLI: its JSON summary."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert to_onnx.main([str(a) for a in args]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A gated model with LoRA (post-LN, group-norm layout) exported by the CLI with mask and embedding (the CLI checks
    it against the unmerged model), and the JAX model with LoRA merged, which compiles faster, as the reference."""
    tmp = tmp_path_factory.mktemp("onnx")
    params, config = zll_lora(**BASE_LAYOUT)
    save_pretrained(tmp / "ckpt", config, params)
    summary = export_cli([tmp / "ckpt", tmp / "model.onnx", "--embedding"])
    params, config = adapters.merge(params, config)  # the same model (merging is tested against transformers)
    return tmp / "model.onnx", build(config), params, summary


def test_cli_writes_a_checked_file_with_dynamic_axes(exported):
    path, model, _, summary = exported
    assert summary["files"] == [str(path), str(path.with_name("README.md"))]
    assert summary["bytes"] == path.stat().st_size
    card = path.with_name("README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["library_name"] == "onnx" and "model.onnx" in card
    assert summary["inputs"] == ["input_values", "attention_mask"] and summary["outputs"] == [LOGITS, EMBEDDING]
    assert summary["style"] == "gated" and summary["layers"] == 4
    assert [s.partition(":")[0] for s in summary["merged_adapters"]] == ["lora"]
    assert summary["max_abs_logit_diff_vs_jax"] <= TOL
    onnx.checker.check_model(str(path), full_check=True)
    for value in onnx.load(str(path)).graph.input:
        dims = value.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, True], value  # symbolic batch and length
    assert to_onnx.min_samples(preset("large")) == 720


@pytest.mark.parametrize("batch, lengths", [(1, LENGTHS[::2]), (3, LENGTHS[1:])])
def test_parity_masked_and_unmasked(exported, batch, lengths):
    """Every length is traced as its own shape (the export traced another): the shortest with one row, an odd
    length with three, the longest with both."""
    path, model, params, _ = exported
    sess, reference = session(path), jax_outputs(model, QUICK_XLA)
    for samples in lengths:
        x, mask = audio(batch, samples)
        got = run(sess, x, mask)
        logits, pooled = reference(params, x, mask)
        assert_close(got[LOGITS], logits, f"masked logits {x.shape}")
        assert_close(got[EMBEDDING], pooled, f"masked embedding {x.shape}")
        got = run(sess, x)  # no mask: the graph gets all ones, the JAX model none
        logits, pooled = reference(params, x, None)
        assert_close(got[LOGITS], logits, f"unmasked logits {x.shape}")
        assert_close(got[EMBEDDING], pooled, f"unmasked embedding {x.shape}")


def test_cli_check_refuses_a_file_that_does_not_reproduce_the_model(exported):
    path, model, params, _ = exported
    with pytest.raises(to_onnx.OnnxExportError, match="onnxruntime logits differ from the JAX model's"):
        to_onnx.verify(path, model, noisy(params, 9, where=lambda p: p.startswith("classifier/")), True)


@pytest.mark.slow
def test_plain_model_exports_without_mask(tmp_path):
    config = preset("tiny", layerdrop=0.0)
    params = noisy(init_params(config, 1), 1)
    model, params = from_pretrained(save_pretrained(tmp_path / "ckpt", config, params))
    summary = export_cli([tmp_path / "ckpt", tmp_path / "plain.onnx", "--no-mask"])
    assert summary["style"] == "plain" and summary["inputs"] == ["input_values"] and summary["outputs"] == [LOGITS]
    sess, reference = session(tmp_path / "plain.onnx"), jax_outputs(model, QUICK_XLA)
    for batch in BATCHES:
        for samples in LENGTHS:
            x, _ = audio(batch, samples)
            assert_close(run(sess, x)[LOGITS], reference(params, x, None)[0], f"logits {x.shape}")
    with pytest.raises(OnnxInputError, match="no attention_mask input"):
        run(sess, *audio(1, 1000))


def test_unexportable_models_are_refused_in_one_line(tmp_path, capsys):
    config = preset("tiny", layerdrop=0.0, adapters=("bottleneck:size=4,style=houlsby",))
    (tmp_path / "bottleneck").mkdir()
    config.save(tmp_path / "bottleneck" / "config.json")  # refused from the config, before the weights are read
    with pytest.raises(to_onnx.OnnxExportError, match="bottleneck"):
        to_onnx.exportable({}, config)
    assert to_onnx.main([str(tmp_path / "bottleneck"), str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bottleneck:size=4" in err and "cannot be exported to ONNX" in err, err
    assert not (tmp_path / "b.onnx").exists()
    assert to_onnx.main([str(tmp_path / "nothing"), str(tmp_path / "n.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_full_disk_keeps_the_previous_export_byte_for_byte(exported, tmp_path, monkeypatch, capsys):
    from exhubert_jax.process.output_dirs import size_text
    from fault_hooks import fill_disk

    path = exported[0]
    out = tmp_path / "model.onnx"
    out.write_bytes(path.read_bytes())  # a good earlier export
    before = out.read_bytes()
    fill_disk(monkeypatch, r"/model\.onnx$")  # the disk fills as the new file is written (512 bytes land)
    capsys.readouterr()
    assert to_onnx.main([str(path.parent / "ckpt"), str(out), "--embedding", "--no-verify"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {out} (No space left on device: needs about "
                                                   f"{size_text(path.stat().st_size)}, "), lines  # the file's size
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
