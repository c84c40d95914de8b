"""One integrity check for every reader of audio: a file cut short (its header declares more audio than it holds, as a
failed copy leaves it), empty, non-finite or undecodable is refused by load_audio and by the timeline's stream, skipped
and listed by prepare, and refused in one line by the single-file commands before their checkpoint is read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import evaluate
from exhubert_jax import save_pretrained
from exhubert_jax.data.audio import load_audio
from exhubert_jax.data.errors import AudioError
from exhubert_jax.data.prepare.command import main as prepare
from exhubert_jax.inference.embedding_files import main as embed
from exhubert_jax.inference.timeline import stream_audio
from exhubert_jax.model.config import preset
from exhubert_jax.model.hubert import init_params
from tests.test_data_prepare import make_corpus

SR = 16000
TRUNCATED = ("truncated: the header declares 320,000 bytes of audio, the file holds 159,978 (cut short by a failed "
             "copy?)")


def tone(path, seconds=10.0, subtype="PCM_16", fmt=None, data=None):
    """A 220 Hz tone (or `data`) written by soundfile at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t) if data is None else data, SR, subtype=subtype, format=fmt)
    return path


def cut(path, keep: int):
    """The file's first `keep` bytes only; its header still declares the whole length."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def open_size(path):
    """A WAV whose RIFF and data sizes are left open (0xFFFFFFFF), as streaming writers leave them: not truncated."""
    data = bytearray(path.read_bytes())
    data[4:8] = data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


BAD = {  # name -> (writer, the reason load_audio gives, from its start)
    # 10 s of 16-bit mono declare 320,000 bytes after the 44-byte header; a failed copy kept 159,978 of them
    "truncated.wav": (lambda p: cut(tone(p), 44 + 159_978), TRUNCATED),
    "truncated.aiff": (lambda p: cut(tone(p, fmt="AIFF"), 20_000), "truncated: the header declares 320,008 bytes"),
    "zero.wav": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "nan.wav": (lambda p: tone(p, subtype="FLOAT", data=np.r_[np.zeros(800), np.nan, np.zeros(800)]),
                "contains NaN or Inf samples"),
    "garbage.wav": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "unreadable ("),
}
GOOD = {  # name -> writer: intact files the check must let through
    "good.wav": tone, "good.aiff": lambda p: tone(p, fmt="AIFF"), "good.flac": tone,
    "open-size.wav": lambda p: open_size(tone(p, seconds=1.0)),
}


@pytest.fixture
def files(tmp_path):
    """{name: path} of every BAD and GOOD file, written under tmp_path/audio."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for name, writer in {**{n: w for n, (w, _) in BAD.items()}, **GOOD}.items():
        writer(folder / name)
    return {name: folder / name for name in (*BAD, *GOOD)}


def test_load_audio_refuses_each_damaged_file_with_its_reason(files):
    for name, (_, reason) in BAD.items():
        with pytest.raises(AudioError) as err:
            load_audio(files[name])
        assert err.value.path == str(files[name]) and err.value.reason.startswith(reason), (name, err.value.reason)
    lengths = {name: len(load_audio(files[name])) for name in GOOD}
    assert lengths == {"good.wav": 10 * SR, "good.aiff": 10 * SR, "good.flac": 10 * SR, "open-size.wav": SR}


def test_the_timeline_stream_refuses_what_load_audio_refuses(files):
    for name, (_, reason) in BAD.items():
        with pytest.raises(AudioError) as err:
            list(stream_audio(files[name]))
        assert err.value.reason.startswith(reason), (name, err.value.reason)
    assert sum(len(b) for b in stream_audio(files["good.aiff"])) == 10 * SR


def test_prepare_skips_counts_and_lists_damaged_files(tmp_path, files, capsys):
    manifest = make_corpus(tmp_path / "src")
    intact = manifest.read_text()
    manifest.write_text(intact + "".join(f"{files[name]},angry,spk0\n" for name in BAD))
    argv = ["--corpus", "toy", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--no-progress"]
    assert prepare(argv) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n_examples"] == 12 and summary["n_skipped"] == len(BAD)
    listed = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert sorted(listed) == sorted(str(files[name]) for name in BAD)
    for name, (_, reason) in BAD.items():
        assert listed[str(files[name])].startswith(reason), name
        assert f"skipped {files[name]}: {reason}" in err, name
    assert f"{len(BAD)} skipped (bad audio)" in err
    manifest.write_text(intact + f"{files['truncated.wav']},angry,spk0\n")
    assert prepare([*argv, "--on-error", "stop"]) == 2  # the stop policy: one line naming the file, nothing changed
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {files['truncated.wav']}: {TRUNCATED}"
    assert json.loads((tmp_path / "out" / "toy" / "info.json").read_text())["summary"] == summary


COMMANDS = {  # command -> (main, argv before --audio)
    "evaluate.py --audio": (evaluate.main, []),
    "evaluate.py --audio --timeline": (evaluate.main, ["--timeline"]),
    "python -m exhubert_jax.embed --audio": (embed, ["--out", "{tmp}/emb"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_single_file_commands_refuse_a_truncated_file_before_reading_the_checkpoint(command, files, tmp_path,
                                                                                      capsys):
    main, extra = COMMANDS[command]
    missing = tmp_path / "no-checkpoint"  # never read: the audio is refused first
    argv = [a.format(tmp=tmp_path) for a in extra] + ["--checkpoint", str(missing), "--audio"]
    assert main([*argv, str(files["truncated.wav"])]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {files['truncated.wav']}: {TRUNCATED}"]
    assert main([*argv, str(files["good.wav"])]) == 2  # an intact file passes the check: the checkpoint is next
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err and "good.wav" not in err


def test_embed_refuses_a_folder_with_a_truncated_file_before_reading_the_checkpoint(tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    tone(folder / "a.wav", seconds=1.0)
    BAD["truncated.wav"][0](folder / "b.wav")
    assert embed(["--checkpoint", str(tmp_path / "none"), "--audio", str(folder), "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {folder / 'b.wav'}: {TRUNCATED}"]


def test_evaluate_a_folder_reports_its_truncated_file_and_predicts_the_others(tmp_path, capsys):
    config = preset("tiny", layerdrop=0.0)
    checkpoint = save_pretrained(tmp_path / "ckpt", config, init_params(config, 0))
    folder = tmp_path / "clips"
    folder.mkdir()
    tone(folder / "a.wav", seconds=1.0)
    BAD["truncated.wav"][0](folder / "b.wav")
    assert evaluate.main(["--checkpoint", str(checkpoint), "--audio", str(folder), "--json"]) == 1
    out, err = capsys.readouterr()
    assert f"error: {folder / 'b.wav'}: {TRUNCATED}" in err.splitlines()
    results = {r["file"]: r for r in json.loads(out)["files"]}
    assert results[str(folder / "b.wav")]["error"] == TRUNCATED and "top" in results[str(folder / "a.wav")]
