"""Messages that name what is wrong: a Latin-1 manifest, invalid JSON in a source's config.json, a config.json
beside a bare weight file, an unknown label's nearest known ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters.torch_io import SourceError, read_source
from exhubert_jax.data.errors import ManifestError, UnknownLabelError
from exhubert_jax.data.sources.readers import read_manifest


def test_a_latin1_manifest_is_one_line_naming_the_file_and_the_encoding(tmp_path):
    manifest = tmp_path / "files.csv"
    manifest.write_bytes("path,label\nb\xe4r.wav,W\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"files\.csv: not UTF-8 text \(byte 0xe4 .*Latin-1.*save it as UTF-8"):
        read_manifest(manifest)


def weights(path):
    """A one-tensor safetensors file."""
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(path))
    return path


def test_invalid_json_in_a_sources_config_names_the_file(tmp_path):
    weights(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"hidden_size": 8,')
    with pytest.raises(SourceError, match=rf"{tmp_path / 'config.json'} is not valid JSON \("):
        read_source(tmp_path)


def test_a_config_beside_a_bare_weight_file_is_used(tmp_path):
    weights(tmp_path / "model.safetensors")
    with pytest.raises(SourceError, match=r"no config\.json beside .*model\.safetensors"):
        read_source(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    state, config = read_source(tmp_path / "model.safetensors")
    assert config == {"hidden_size": 8} and list(state) == ["x"]


def test_an_unknown_label_names_the_nearest_known_ones_not_the_whole_table():
    known = [f"label{i}" for i in range(40)] + ["angry", "anxious", "sad"]
    message = str(UnknownLabelError("toy", "a.wav", "angri", known))
    assert "nearest known: angry" in message and "label17" not in message
    assert "none of its 43 labels is close" in str(UnknownLabelError("toy", "a.wav", "zzzz", known))


def test_train_init_accepts_a_workdir_as_evaluate_does(tmp_path, capsys):
    import train
    from exhubert_jax import from_pretrained, init_params, preset, save_pretrained

    save_pretrained(tmp_path / "run" / "best", preset("tiny"), init_params(preset("tiny"), 0))
    code = train.main(["--stage", "expand", "--init", str(tmp_path / "run"), "--workdir", str(tmp_path / "exp")])
    out = capsys.readouterr().out
    assert code == 0 and f"(the best/ checkpoint of the workdir {tmp_path / 'run'})" in out
    assert from_pretrained(tmp_path / "exp" / "final")[0].config.expansion_copies == 1
