"""Exports appear whole or not at all, and never overwrite what they read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import flax_to_torch
from exhubert_jax import save_pretrained
from exhubert_jax.model.config import preset
from exhubert_jax.model.hubert import init_params
from exhubert_jax.process.atomic_files import OutputError, atomic_directory


def files(folder):
    """{relative path: bytes} of every file below a folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_block_replaces_the_old_folder_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.json").write_text("{}")
    with atomic_directory(out) as tmp:
        assert tmp.parent == tmp_path and not out.samefile(tmp)
        (tmp / "new.txt").write_text("new")
    assert files(out) == {"new.txt": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old folder left


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_an_interrupted_block_leaves_the_old_folder_as_it_was(tmp_path, interrupt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"old": true}')
    before = files(out)
    with pytest.raises(interrupt):
        with atomic_directory(out) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise interrupt()
    assert files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_export_onto_or_inside_its_source_is_refused(tmp_path, capsys):
    config = preset("tiny")
    src = save_pretrained(tmp_path / "ckpt", config, init_params(config, 0))
    before = files(src)
    for out in (src, src / "torch", tmp_path):
        assert flax_to_torch.main([str(src), str(out)]) == 2
        assert "choose another output folder" in capsys.readouterr().err
    assert files(src) == before
    assert flax_to_torch.main([str(src), str(tmp_path / "torch")]) == 0
    hf = json.loads((tmp_path / "torch" / "config.json").read_text())
    assert hf["num_hidden_layers"] == config.num_hidden_layers
    assert sorted(files(tmp_path / "torch")) == ["config.json", "model.safetensors", "preprocessor_config.json"]


def test_refusal_names_both_paths(tmp_path):
    with pytest.raises(OutputError, match="lies inside the input"):
        with atomic_directory(tmp_path / "a" / "b", tmp_path / "a"):
            pass


def test_an_export_refuses_a_leaf_the_config_does_not_describe(tmp_path):
    from exhubert_jax.pretrained import CheckpointError

    config = preset("tiny")
    params = init_params(config, 0)
    params = {**params, "hubert": {**params["hubert"], "encoder": {**params["hubert"]["encoder"],
                                                                 "stray": {"kernel": np.zeros((2, 2))}}}}
    with pytest.raises(CheckpointError, match=r"export of a 2-layer model .*stray.*is not part of this config"):
        flax_to_torch.export(params, config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_save_pretrained_replaces_a_checkpoint_whole_and_keeps_its_other_files(tmp_path, monkeypatch):
    from exhubert_jax import from_pretrained, pretrained

    config = preset("tiny")
    first, second = init_params(config, 0), init_params(config, 1)
    out = save_pretrained(tmp_path / "ckpt", config, first)
    (out / "eval").mkdir()
    (out / "eval" / "index.md").write_text("earlier evaluations")
    before = files(out)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the disk fills after the weights were written, before config.json
        m.setattr(pretrained.HubertConfig, "save", full_disk)
        with pytest.raises(pretrained.CheckpointWriteError, match="No space left"):
            save_pretrained(out, config, second)
    assert files(out) == before  # the old checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left
    save_pretrained(out, config, second)
    _, loaded = from_pretrained(out)
    assert np.array_equal(loaded["classifier"]["kernel"], second["classifier"]["kernel"])
    assert (out / "eval" / "index.md").read_text() == "earlier evaluations"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
