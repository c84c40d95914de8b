"""Hub ids wherever a checkpoint is read: a real huggingface_hub cache in a temporary HF_HOME, offline; a plain HuBERT
and the released layout convert on first use to the torch models' logits, the second load reads the converted cache,
and each way it can fail is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import torch
from hf_models import padded_batch, save_tiny, torch_forward
from hub_cache import cache_repo
from released_replica import build_replica, save_released

import exhubert_jax
from converters import torch_to_flax
from exhubert_jax.hub import conversion, repos

jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """HF_HOME in a temporary folder and HF_HUB_OFFLINE=1, for this process (huggingface_hub's constants, read when
    it was imported, are set too) and for the commands it starts; returns HF_HOME."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("EXHUBERT_CACHE", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def no_conversion(monkeypatch) -> None:
    """Make any conversion fail: what loads after this came from the converted cache."""
    def never(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(conversion, "load_source", never)


def logits(model, params, audio, mask) -> np.ndarray:
    """Our model's logits on a padded batch."""
    return np.asarray(model.apply({"params": params}, audio, mask.astype(np.int32)).logits)


def test_a_plain_hubert_loads_by_id_and_then_from_the_cache(offline_hub, tmp_path, monkeypatch):
    torch_model = save_tiny(tmp_path / "hf", "base", safe=True)
    commit = cache_repo(offline_hub, "org/plain", tmp_path / "hf")
    audio, mask = padded_batch()
    want, _ = torch_forward(torch_model, audio, mask)
    model, params = exhubert_jax.from_pretrained("org/plain", log=lambda line: None)
    assert np.max(np.abs(logits(model, params, audio, mask) - want)) <= TOL
    converted = offline_hub / "exhubert-jax" / "converted" / "v1" / "models--org--plain" / commit
    assert repos.is_checkpoint(converted)
    assert json.loads((converted / repos.SOURCE_JSON).read_text())["commit"] == commit
    no_conversion(monkeypatch)
    again, params = exhubert_jax.from_pretrained(f"org/plain@{commit}")  # the commit itself, also cached
    assert again.config == model.config
    assert np.max(np.abs(logits(again, params, audio, mask) - want)) <= TOL


def test_the_released_layout_converts_with_layerdrop_off(offline_hub, tmp_path, monkeypatch):
    """The released checkpoint's config.json says layerdrop 0.1; its code never drops a layer, so neither do we."""
    replica = build_replica(seed=3, layerdrop=0.1)
    save_released(replica, tmp_path / "released")
    cache_repo(offline_hub, "org/ExHuBERT", tmp_path / "released", revision="v1")
    lines = []
    model, params = exhubert_jax.from_pretrained("org/ExHuBERT@v1", log=lines.append)
    assert (model.config.expansion_style, model.config.layerdrop) == ("gated", 0.0)
    assert any("ignored config key layerdrop: 0.1 in config.json" in line and "LayerDrop off" in line
               for line in lines)
    audio, mask = padded_batch((4000, 3100))
    with torch.no_grad():
        want = replica(torch.from_numpy(audio), torch.from_numpy(mask)).numpy()
    assert np.max(np.abs(logits(model, params, audio, mask) - want)) <= TOL
    no_conversion(monkeypatch)
    assert exhubert_jax.from_pretrained("org/ExHuBERT@v1")[0].config == model.config


def test_a_local_path_wins_over_an_id_of_the_same_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert repos.parse_hub_id("org/name@v2") == repos.HubId("org/name", "v2")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert repos.parse_hub_id("org/name") is None
    assert repos.parse_hub_id("org/missing") is None  # inside a local folder: a missing path, not an id
    assert repos.parse_hub_id("/abs/path") is None and repos.parse_hub_id("a/b/c") is None


def one_line_error(excinfo) -> str:
    """The message, checked to be one line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_not_in_the_cache_offline_says_how_to_get_it(offline_hub):
    with pytest.raises(repos.HubOfflineError) as e:
        exhubert_jax.from_pretrained("org/missing")
    message = one_line_error(e)
    assert "hf download org/missing" in message and "HF_HUB_OFFLINE" in message


def test_a_repo_of_another_kind_or_without_weights_is_an_unknown_layout(offline_hub, tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "bert" / "model.safetensors").write_bytes(b"\0" * 16)
    cache_repo(offline_hub, "org/bert", tmp_path / "bert")
    with pytest.raises(repos.UnknownLayoutError, match="model_type 'bert'") as e:
        exhubert_jax.from_pretrained("org/bert")
    one_line_error(e)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    (tmp_path / "empty" / "notes.txt").write_text("weights to come")
    cache_repo(offline_hub, "org/empty", tmp_path / "empty")
    with pytest.raises(repos.HubOfflineError):  # offline, it cannot ask the Hub what else the repo holds
        exhubert_jax.from_pretrained("org/empty")


@pytest.mark.parametrize("error, kind, message", [
    ("GatedRepoError", repos.HubAccessError, "gated repo and no token"),
    ("RepositoryNotFoundError", repos.HubRepoNotFound, "no Hub repo org/name"),
    ("RevisionNotFoundError", repos.HubRepoNotFound, "has no revision"),
])
def test_hub_refusals_are_one_line(monkeypatch, tmp_path, error, kind, message):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise getattr(errors, error)("401 Client Error", response=SimpleNamespace(headers={}, request=None))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(kind, match=message) as e:
        repos.resolve_checkpoint("org/name@dev")
    one_line_error(e)


def test_the_converter_and_train_take_ids(offline_hub, tmp_path, capsys, monkeypatch):
    """torch_to_flax converts a cached repo by id; train.py --init starts from it (the conversion cached once): the
    model it trains is the converted one and the run records the id. (A whole transfer from a converted checkpoint
    trains in test_released.py; here the training itself is left out.)"""
    import train as cli
    from exhubert_jax.data.demo.synthetic import prepare_demo
    from exhubert_jax.training import stages

    started = {}

    def run_training(args, model, params, corpora, opts, workdir, init):
        started.update(params=params, init=init, corpora=list(corpora))
        return 0

    monkeypatch.setattr(stages, "run_training", run_training)

    save_tiny(tmp_path / "hf", "large", safe=True, num_labels=6, layerdrop=0.0)
    cache_repo(offline_hub, "org/tiny", tmp_path / "hf")
    assert torch_to_flax.main(["org/tiny", str(tmp_path / "flax")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["used"] > 0
    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    argv = ["--stage", "transfer", "--corpus", "demo-b", "--data-dir", str(tmp_path / "data"), "--init", "org/tiny",
            "--workdir", str(tmp_path / "tr"), "--steps", "1", "--batch-size", "4", "--max-seconds", "0.5",
            "--eval-every", "1", "--quiet"]
    assert cli.main(argv) == 0
    assert "exhubert-jax/converted/v1/models--org--tiny" in capsys.readouterr().out
    assert started["init"] == "org/tiny" and started["corpora"] == ["demo-b"]
    converted = exhubert_jax.from_pretrained(tmp_path / "flax")[1]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(converted["hubert"]),
                                                    jax.tree.leaves(started["params"]["hubert"])))


def test_the_command_reads_hf_home_and_offline_from_the_environment(offline_hub, tmp_path):
    save_tiny(tmp_path / "hf", "base", safe=False)
    cache_repo(offline_hub, "org/env", tmp_path / "hf")
    run = subprocess.run([sys.executable, "-m", "converters.torch_to_flax", "org/env", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    missing = subprocess.run([sys.executable, "-m", "converters.torch_to_flax", "org/absent", str(tmp_path / "x")],
                             cwd=ROOT, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "hf download org/absent" in missing.stderr and not (tmp_path / "x").exists()


def test_evaluate_embed_and_the_exports_resolve_ids_to_the_converted_checkpoint(offline_hub, tmp_path):
    """evaluate.py and embed resolve --checkpoint through scoring.resolve_checkpoint, the exports SRC through
    repos.resolve_checkpoint: an id gives the converted checkpoint, whose export's card names the repo as base."""
    import yaml

    from converters import flax_to_torch
    from exhubert_jax.evaluation.scoring import resolve_checkpoint

    save_tiny(tmp_path / "hf", "large", safe=True)
    commit = cache_repo(offline_hub, "org/card", tmp_path / "hf")
    converted = resolve_checkpoint("org/card")
    assert converted == repos.converted_dir(repos.HubId("org/card"), commit) and repos.is_checkpoint(converted)
    assert flax_to_torch.main(["org/card", str(tmp_path / "pt")]) == 0
    meta = yaml.safe_load((tmp_path / "pt" / "README.md").read_text().split("---\n")[1])
    assert meta["base_model"] == "org/card"


def test_without_huggingface_hub_an_id_is_one_line_and_local_paths_still_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed: the "torch" extra
    with pytest.raises(repos.HubError, match=r"pip install 'exhubert-jax\[torch\]'") as e:
        repos.resolve_checkpoint("org/name")
    one_line_error(e)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert repos.resolve_checkpoint("ckpt") == (Path("ckpt"), None)


def test_a_repo_holding_an_exhubert_jax_checkpoint_is_used_as_downloaded(offline_hub, tmp_path, monkeypatch):
    from exhubert_jax import save_pretrained
    from exhubert_jax.model.config import preset
    from exhubert_jax.model.hubert import init_params

    config = preset("tiny", layerdrop=0.0)
    save_pretrained(tmp_path / "flax", config, init_params(config, 0))
    commit = cache_repo(offline_hub, "org/flax", tmp_path / "flax")
    no_conversion(monkeypatch)
    model, params = exhubert_jax.from_pretrained("org/flax")
    assert model.config == config and jax.tree.structure(params) == jax.tree.structure(init_params(config, 1))
    assert "snapshots" in str(repos.resolve_checkpoint("org/flax")[0])
    assert not repos.converted_dir(repos.HubId("org/flax"), commit).exists()
