"""Checkpoints read and written tensor by tensor: the lazy readers against safetensors and torch, no random
initialisation of what a checkpoint holds, the streaming writer, and the peak memory of a conversion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict
from hf_models import save_tiny
from safetensors.numpy import load_file, save_file

import exhubert_jax.adapters.wrapper
import exhubert_jax.model.hubert
from exhubert_jax.hub.conversion import config_for, convert
from exhubert_jax.hub.mapping import params_to_state_dict, torch_tensors
from exhubert_jax.hub.torch_io import (
    SourceError,
    open_safetensors,
    open_torch_file,
    read_source,
    write_safetensors,
)
from exhubert_jax.model.config import preset

ROOT = Path(__file__).resolve().parents[1]


def tensors() -> dict[str, np.ndarray]:
    """Arrays of every float dtype a checkpoint may hold, a scalar and an empty one among them."""
    rng = np.random.default_rng(0)
    return {"a.weight": rng.standard_normal((5, 3)).astype(np.float32),
            "b.half": rng.standard_normal((4,)).astype(np.float16),
            "c.bf16": rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16),
            "d.scalar": np.array(1.5, np.float64), "e.empty": np.zeros((0, 4), np.float32)}


def test_safetensors_read_lazily_equal_the_library_and_damage_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(tensors(), str(path))
    lazy = open_safetensors(path)
    assert {k: v.shape for k, v in lazy.items()} == {k: v.shape for k, v in tensors().items()}
    for key, want in load_file(str(path)).items():
        got = np.asarray(lazy[key])
        assert got.dtype == np.float32 and np.array_equal(got, want.astype(np.float32)), key
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(SourceError, match="model.safetensors.*truncated"):
        open_safetensors(path)
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(SourceError, match="header length"):
        open_safetensors(path)


@pytest.mark.parametrize("zipped", [True, False])
def test_a_bin_reads_lazily_mapped_or_old_style(tmp_path, zipped):
    state = {"x": torch.randn(7, 5), "y": torch.randn(3).to(torch.bfloat16)}
    torch.save(state, tmp_path / "w.bin", _use_new_zipfile_serialization=zipped)
    lazy = open_torch_file(tmp_path / "w.bin")
    assert lazy["x"].shape == (7, 5)
    for key, value in state.items():
        assert np.array_equal(np.asarray(lazy[key]), value.float().numpy())
        assert np.array_equal(np.asarray(lazy[key]), value.float().numpy())  # pages handed back are read again
    torch.save({"x": torch.zeros(2), "step": 3}, tmp_path / "w.bin")
    with pytest.raises(SourceError, match="'step' is a int, not a tensor"):
        open_torch_file(tmp_path / "w.bin")


def test_nothing_a_checkpoint_holds_is_initialised(tmp_path, monkeypatch):
    """A head-ful checkpoint converts without any initialisation; a bare encoder gets exactly init_params's head."""
    save_tiny(tmp_path / "cls", "large", safe=True)
    save_tiny(tmp_path / "enc", "large", head="model", safe=True)
    real = exhubert_jax.model.hubert.init_params

    def never(*args, **kwargs):
        raise AssertionError("a whole tree was initialised")

    for module in (exhubert_jax.model.hubert, exhubert_jax.adapters.wrapper):
        monkeypatch.setattr(module, "init_params", never)
    state, hf = read_source(tmp_path / "cls")
    params, report = convert(state, config_for(hf, state, None))
    assert not report.initialised
    state, hf = read_source(tmp_path / "enc")
    config = config_for(hf, state, None)
    params, report = convert(state, config, seed=3)
    assert sorted(report.initialised) == ["classifier/bias", "classifier/kernel", "projector/bias", "projector/kernel"]
    fresh = flatten_dict(jax.device_get(real(config, 3)))
    for path, value in flatten_dict(params).items():
        if path[0] in ("projector", "classifier"):
            assert np.array_equal(value, fresh[path]), path


def test_the_streaming_writer_equals_the_state_dict(tmp_path):
    config = preset("tiny", layerdrop=0.0, expansion_copies=1, expansion_style="gated")
    params = jax.device_get(exhubert_jax.adapters.wrapper.init_params(config, 1))
    lazy = torch_tensors(params, config)
    write_safetensors(lazy, tmp_path / "model.safetensors")
    back, want = load_file(str(tmp_path / "model.safetensors")), params_to_state_dict(params, config)
    assert set(back) == set(want) and all(np.array_equal(back[k], want[k]) for k in want)
    assert {k: tuple(v.shape) for k, v in lazy.items()} == {k: v.shape for k, v in want.items()}


# The conversion in a process of its own; its peak RSS is VmHWM (getrusage's would start from pytest's RSS at fork).
CHILD = """
import json, re, sys
sys.path[:0] = [{root!r}]
import jax, torch  # noqa: F401 - the import baseline
from converters import torch_to_flax
def peak():
    return int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read()).group(1))
base = peak()
assert torch_to_flax.main([{src!r}, {out!r}]) == 0
print(json.dumps({{"base": base, "peak": peak()}}))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("safe", [True, False])
def test_a_conversion_needs_at_most_half_the_file_on_top_of_it(tmp_path, safe):
    """A HuBERT Base-sized checkpoint (95 M parameters, 380 MB) converts with a peak RSS over the import baseline of
    at most 1.5 times the weight file (the tree it builds is one times it)."""
    from transformers import HubertConfig, HubertForSequenceClassification

    with torch.device("meta"):
        model = HubertForSequenceClassification(HubertConfig(num_labels=6))
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(tmp_path / "hf")
    if not safe:  # transformers 5 writes safetensors only: the .bin as torch.save writes it
        torch.save(model.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
        (tmp_path / "hf" / "model.safetensors").unlink()
    del model
    weights = next(p for p in (tmp_path / "hf").iterdir() if p.suffix in (".safetensors", ".bin"))
    child = CHILD.format(root=str(ROOT), src=str(tmp_path / "hf"), out=str(tmp_path / "flax"))
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    rss = json.loads(run.stdout.strip().splitlines()[-1])
    over = (rss["peak"] - rss["base"]) * 1024 / weights.stat().st_size
    assert over <= 1.5, f"peak RSS over the import baseline is {over:.2f} times {weights.name}"
    print(f"{weights.name}: peak RSS over the import baseline {over:.2f} times the file")


SAVE_CHILD = """
import re, sys
sys.path[:0] = [{root!r}]
import numpy as np, orbax.checkpoint as ocp
from exhubert_jax.pretrained import tree_checkpointer
def peak():
    return int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read()).group(1))
rng = np.random.default_rng(0)
tree = {{f"copies{{i}}": rng.standard_normal((8, 1, 1024, 4096), np.float32) for i in range(3)}}
base = peak()
with tree_checkpointer() as ckptr:
    ckptr.save({out!r}, args=ocp.args.PyTreeSave(tree))
print((peak() - base) * 1024 / sum(v.nbytes for v in tree.values()))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_saving_holds_no_second_copy_of_stacked_copies(tmp_path):
    """An expanded model's copies are stacked (L, 1, ...); TensorStore copies such an array before writing it, so
    save_pretrained writes them one at a time: 400 MB of them save with at most one array (a third) on top."""
    child = SAVE_CHILD.format(root=str(ROOT), out=str(tmp_path / "params"))
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.strip().splitlines()[-1]) <= 0.45
