"""Exports appear whole or not at all, and never overwrite what they read."""

from __future__ import annotations

import errno
import json
import re

import numpy as np
import pytest
from safetensors import SafetensorError

from converters import flax_to_torch
from exhubert_jax import save_pretrained
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import preset
from exhubert_jax.model.hubert import init_params
from exhubert_jax.process.atomic_files import OutputError, atomic_directory, atomic_files
from exhubert_jax.process.output_dirs import DiskFullError, disk_full
from fault_hooks import fill_disk


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
    assert sorted(files(tmp_path / "torch")) == ["README.md", "config.json", "model.safetensors",
                                                  "preprocessor_config.json"]


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


# ------------------------------------------------------------------------------------- file sets and a full disk


def one_error_line(err: str) -> str:
    """The stderr of a failed command must be exactly one 'error: ...' line; returns it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


def test_a_file_set_is_replaced_whole_and_a_stale_part_removed(tmp_path):
    out, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    out.write_text("old graph")
    data.write_text("old weights")
    (tmp_path / "other.txt").write_text("kept")
    with atomic_files(out, data) as tmp:
        assert tmp.parent == tmp_path
        (tmp / "m.onnx").write_text("new graph")  # this export keeps its weights inside: no .data
    assert files(tmp_path) == {"m.onnx": b"new graph", "other.txt": b"kept"}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_an_interrupted_file_set_leaves_every_old_file(tmp_path, interrupt):
    out, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    out.write_text("old graph")
    data.write_text("old weights")
    before = files(tmp_path)
    with pytest.raises(interrupt), atomic_files(out, data) as tmp:
        (tmp / "m.onnx.data").write_text("new weights")
        raise interrupt()
    assert files(tmp_path) == before


def test_a_full_disk_in_a_file_set_is_one_line_and_keeps_the_old_files(tmp_path, monkeypatch):
    out = tmp_path / "talk.csv"
    out.write_text("old table")
    before = files(tmp_path)
    fill_disk(monkeypatch, r"talk\.csv$")
    with pytest.raises(DiskFullError) as info, atomic_files(out, tmp_path / "talk.json") as tmp:
        (tmp / "talk.csv").write_text("x" * 10_000)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"cannot write {out} (No space left on device: 512 bytes written"), msg
    assert isinstance(info.value, ExhubertError) and "free there" in msg
    assert files(tmp_path) == before  # the old file, byte for byte, and no partial one


@pytest.mark.parametrize("error,words", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded"),
    (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "No space left on device"),
    (RuntimeError('Failed to finalize writing of split "train": write() failed: No space left on device; writing '
                  "x.array_record; at byte 1048576"), "No space left on device"),
    (ValueError("RESOURCE_EXHAUSTED: Failed to write 43101 bytes to file 11: Disk quota exceeded "
                "[os_error_code='122']"), "Disk quota exceeded"),
    (OSError(errno.EACCES, "Permission denied"), None),
    (ValueError("bad value"), None),
])
def test_a_full_disk_is_recognised_under_every_wrapper(error, words):
    assert disk_full(error) == words
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("while saving") from inner
    except RuntimeError as outer:
        assert disk_full(outer) == words  # found in the chain too


@pytest.fixture
def torch_export(tmp_path):
    """A tiny checkpoint and its intact PyTorch export: (checkpoint, export folder, the export's files)."""
    config = preset("tiny")
    src = save_pretrained(tmp_path / "ckpt", config, init_params(config, 0))
    assert flax_to_torch.main([str(src), str(tmp_path / "torch")]) == 0
    return src, tmp_path / "torch", files(tmp_path / "torch")


@pytest.mark.parametrize("where", ["model.safetensors", "config.json"])
def test_flax_to_torch_on_a_full_disk_is_one_line_and_keeps_the_previous_export(torch_export, where, monkeypatch,
                                                                                 capsys):
    src, out, before = torch_export
    fill_disk(monkeypatch, rf"/{re.escape(where)}$")  # the weights are written tensor by tensor, through open()
    capsys.readouterr()
    assert flax_to_torch.main([str(src), str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {out} (No space left on device: needs about 1"), line
    assert "nothing there was changed" in line
    assert files(out) == before  # the previous export, byte for byte
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt", "torch"]  # no partial folder


def test_a_plot_on_a_full_disk_keeps_the_previous_png(tmp_path, monkeypatch):
    from exhubert_jax.evaluation.reports import plot_uar_curve

    history = [{"step": s, "demo": 0.2 * s, "mean": 0.2 * s} for s in (1, 2, 3)]
    path = plot_uar_curve(history, tmp_path / "uar_curve.png")
    before = files(tmp_path)
    fill_disk(monkeypatch, r"uar_curve\.png$")
    with pytest.raises(DiskFullError, match=f"cannot write {path} "):
        plot_uar_curve(history[:2], path)
    assert files(tmp_path) == before
