"""Audio checks, preparation (skip/stop policy, idempotency, atomicity, determinism), reading prepared data."""

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from exhubert_jax.data.audio import load_audio, to_pcm16
from exhubert_jax.data.errors import AudioError, PreparedDataError, UnknownLabelError
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare.builders import SCHEMA
from exhubert_jax.data.prepare.command import main
from exhubert_jax.data.prepare.corpus import prepare_corpus


def wav(path, seconds=0.3, sr=16000, freq=220.0, channels=1, subtype="PCM_16", data=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        t = np.arange(int(seconds * sr)) / sr
        mono = 0.5 * np.sin(2 * np.pi * freq * t)
        data = np.stack([mono * (c + 1) / channels for c in range(channels)], 1) if channels > 1 else mono
    sf.write(str(path), data, sr, subtype=subtype)
    return path


BAD = {  # name -> (writer, reason fragment)
    "unreadable.wav": (lambda p: p.write_bytes(b"RIFF not really a wav file"), "unreadable"),
    "empty.wav": (lambda p: wav(p, data=np.zeros(0, np.float32)), "empty"),
    "short.wav": (lambda p: wav(p, data=np.full(399, 0.1, np.float32)), "too short: 399 samples"),
    "short22k.wav": (lambda p: wav(p, sr=22050, data=np.full(500, 0.1, np.float32)), "too short: 363 samples"),
    "nan.wav": (lambda p: wav(p, subtype="FLOAT", data=np.r_[np.zeros(800), np.nan, np.zeros(800)]), "NaN"),
    "inf.wav": (lambda p: wav(p, subtype="FLOAT", data=np.r_[np.zeros(800), np.inf, np.zeros(800)]), "Inf"),
    "missing.wav": (lambda p: None, "file not found"),
}


def make_corpus(root, n_speakers=3, per_speaker=4, bad=(), labels=("angry", "sad", "neutral", "happy")):
    rows = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            rel = f"s{s}/utt{k}.wav"
            wav(root / rel, seconds=0.2 + 0.05 * k, sr=(16000, 22050, 8000)[s % 3], freq=100 + 40 * s + 10 * k,
                channels=1 + s % 2)
            rows.append(f"{rel},{labels[k % len(labels)]},spk{s}")
    for name in bad:
        BAD[name][0](root / "bad" / name)
        rows.append(f"bad/{name},angry,spk0")
    (root / "manifest.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_load_audio_mixes_and_resamples(tmp_path):
    path = wav(tmp_path / "st.wav", seconds=1.0, sr=22050, freq=440.0, channels=2)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.shape == (16000,)
    assert np.argmax(np.abs(np.fft.rfft(x))) == 440  # 1 Hz bins
    assert abs(np.abs(x).max() - 0.375) < 0.01  # mean of the 0.25 and 0.5 amplitude channels


@pytest.mark.parametrize("name", sorted(BAD))
def test_load_audio_rejects_bad_files_with_path_and_reason(tmp_path, name):
    path = tmp_path / name
    BAD[name][0](path)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(path) in str(err.value) and BAD[name][1] in err.value.reason


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    manifest = make_corpus(tmp_path / "src", bad=sorted(BAD))
    logs = []
    summary = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, log=logs.append, progress=False)
    assert summary["n_examples"] == 12 and summary["n_skipped"] == len(BAD)
    info = open_prepared("toy", tmp_path / "out").info
    reasons = {Path(s["path"]).name: s["reason"] for s in info["skipped"]}
    assert set(reasons) == set(BAD)
    for name, (_, fragment) in BAD.items():
        assert fragment in reasons[name]
        assert any(name in line and fragment in line for line in logs), name
    assert any(f"{len(BAD)} skipped" in line for line in logs)


def test_stop_policy_raises_and_leaves_nothing(tmp_path):
    manifest = make_corpus(tmp_path / "src", bad=["nan.wav"])
    with pytest.raises(AudioError, match="nan.wav: contains NaN"):
        prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, on_error="stop", progress=False,
                       log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_prepared_data_round_trips(tmp_path):
    manifest = make_corpus(tmp_path / "src", n_speakers=4)
    summary = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=lambda m: None)
    pc = open_prepared("toy", tmp_path / "out")
    assert pc.native_labels == ("angry", "happy", "neutral", "sad")
    assert pc.info["speaker_independent"] and pc.info["split_method"] == "speaker"
    assert datetime.fromisoformat(pc.split("train").prepared_at).utcoffset() == timedelta(0)  # a run records it
    seen = {}
    for name in pc.splits:
        split = pc.split(name)
        assert len(split) == summary["splits"][name]["n"]
        for i in range(len(split)):
            ex = split[i]
            assert ex["corpus"] == "toy" and ex["audio"].dtype == np.float32
            assert ex["duration"] == pytest.approx(split.durations[i])
            assert pc.native_labels[ex["native_index"]] == ex["native_label"]
            assert ex["label"] == {"angry": 3, "sad": 0, "neutral": 1, "happy": 5}[ex["native_label"]]
            seen.setdefault(ex["speaker"], set()).add(name)
    assert all(len(s) == 1 for s in seen.values())  # no speaker in two splits
    ex = pc.split("train")[0]
    header, pcm = pc.split("train").read_pcm([0])[0]
    assert np.array_equal(pcm, to_pcm16(load_audio(tmp_path / "src" / header["path"])))
    np.testing.assert_allclose(ex["audio"], pcm / 32768.0, atol=1e-7)
    with pytest.raises(IndexError):
        pc.split("train")[len(pc.split("train"))]


def test_prepare_is_idempotent_and_force_rebuilds(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    logs = []
    first = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    train_file = next((tmp_path / "out/toy").glob("*/toy-train.array_record-*"))
    stamp = train_file.stat().st_mtime_ns
    again = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    assert again == first and "up to date" in logs[-1]
    assert train_file.stat().st_mtime_ns == stamp
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append, force=True)
    assert "up to date" not in logs[-1]
    wav(tmp_path / "src/s1/utt0.wav", seconds=0.9)  # a changed source file is noticed
    changed = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    assert "up to date" not in logs[-1] and changed["n_examples"] == first["n_examples"]
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append, seed=1)
    assert "up to date" not in logs[-1]  # so is another seed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy"]  # no temp folders left


def test_preparation_is_deterministic(tmp_path):
    manifest = make_corpus(tmp_path / "src", n_speakers=5, per_speaker=14)  # 70 files: "b" decodes in 2 processes
    for out in ("a", "b"):
        prepare_corpus("toy", out=tmp_path / out, manifest=manifest, progress=False, log=lambda m: None,
                       workers=2 if out == "b" else 1)
    (va,), (vb,) = ((tmp_path / o / "toy").glob(f"{SCHEMA}.*") for o in ("a", "b"))
    assert sorted(os.listdir(va)) == sorted(os.listdir(vb))
    for f in sorted(set(os.listdir(va)) - {"metadata.json"}):
        assert (va / f).read_bytes() == (vb / f).read_bytes(), f
    for fa, fb in ((va / "metadata.json", vb / "metadata.json"), (va.parent / "info.json", vb.parent / "info.json")):
        ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
        assert ja.pop("command").replace("/a", "/b") == jb.pop("command")  # only --out differs
        ja.pop("prepared_at", None), jb.pop("prepared_at", None)  # and when (info.json only)
        assert ja == jb


def test_failed_rebuild_keeps_previous_data(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    before = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=lambda m: None)
    (tmp_path / "src/s0/utt1.wav").write_bytes(b"garbage")
    with pytest.raises(AudioError, match="utt1.wav: unreadable"):
        prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=lambda m: None,
                       on_error="stop")
    assert open_prepared(tmp_path / "out/toy").info["summary"] == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy"]


def test_labels_dropped_by_the_table_and_unknown_labels(tmp_path):
    manifest = make_corpus(tmp_path / "src", labels=("neu", "xxx", "ang"))
    summary = prepare_corpus("iemocap", out=tmp_path / "out", manifest=manifest, progress=False,
                             log=lambda m: None)
    assert summary["n_dropped"] == 3 and summary["n_examples"] == 9
    assert open_prepared("iemocap", tmp_path / "out").info["dropped"] == {"xxx": 3}
    bad = make_corpus(tmp_path / "src2", labels=("angry", "grumpy", "sad", "meh"))
    with pytest.raises(UnknownLabelError, match=r"toy: .*utt1.wav: unknown label 'grumpy'; also unknown: 'meh' \(3"):
        prepare_corpus("toy", out=tmp_path / "out", manifest=bad, progress=False, log=lambda m: None)


def test_own_split_that_shares_speakers_is_flagged(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    rows = manifest.read_text().splitlines()
    split = ["train", "validation", "test"]
    manifest.write_text("\n".join([rows[0] + ",split"] + [f"{r},{split[i % 3]}" for i, r in enumerate(rows[1:])]))
    logs = []
    summary = prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    info = open_prepared("toy", tmp_path / "out").info
    assert info["split_method"] == "own" and [summary["splits"][s]["n"] for s in split] == [4, 4, 4]
    assert not info["speaker_independent"] and info["shared_speakers"] == ["spk0", "spk1", "spk2"]
    assert "not speaker-independent" in logs[-1]


def test_cli_prints_json_last_and_uses_exhubert_data(tmp_path, monkeypatch, capsys):
    manifest = make_corpus(tmp_path / "src")
    monkeypatch.setenv("EXHUBERT_DATA", str(tmp_path / "envdata"))
    assert main(["--corpus", "toy", "--manifest", str(manifest), "--no-progress"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["corpus"] == "toy" and summary["n_examples"] == 12 and summary["n_skipped"] == 0
    assert set(summary["splits"]) == {"train", "validation", "test"}
    assert set(summary["splits"]["train"]) == {"n", "speakers", "classes"}
    assert (tmp_path / "envdata/toy/info.json").is_file()
    assert main(["--corpus", "toy", "--manifest", str(manifest), "--no-progress"]) == 0
    again = capsys.readouterr()
    assert json.loads(again.out.strip().splitlines()[-1]) == summary and "up to date" in again.err


@pytest.mark.parametrize("args,message", [
    (["--corpus", "nope", "--source", "."], "unknown corpus 'nope'; known corpora: abc, ad"),
    (["--corpus", "emodb", "--source", "/no/such/dir"], "emodb corpus folder not found: /no/such/dir"),
    (["--corpus", "gemep", "--source", "."], "gemep is read through a manifest"),
])
def test_cli_errors(args, message, capsys, tmp_path):
    assert main(args + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_open_prepared_errors(tmp_path):
    with pytest.raises(PreparedDataError, match="no prepared corpus 'emodb'.*prepared there: none"):
        open_prepared("emodb", tmp_path)
    manifest = make_corpus(tmp_path / "src")
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=lambda m: None)
    with pytest.raises(PreparedDataError, match="no split 'dev'"):
        open_prepared("toy", tmp_path / "out").split("dev")


def emodb_tree(root):
    """A tiny EMO-DB-named tree of real audio at 22.05 kHz (like the shared subset)."""
    rng = np.random.default_rng(0)
    for spk in ("03", "08", "09", "10", "11"):
        for k, letter in enumerate("WLEAFTN"):
            wav(root / "wav" / f"{spk}a0{k}{letter}a.wav", sr=22050,
                data=(0.1 * rng.standard_normal(4410)).astype(np.float32))
    return root


def check_emodb(summary, info, n, classes):
    assert summary["n_examples"] == n and summary["n_skipped"] == 0
    assert sum(s["speakers"] for s in summary["splits"].values()) == 5
    assert info["speaker_independent"] and info["shared_speakers"] == []
    speakers = [set(info["splits"][s]["speakers"]) for s in ("train", "validation", "test")]
    assert all(speakers) and not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    total = {c: sum(s["classes"][c] for s in summary["splits"].values()) for c in classes}
    assert total == classes


def test_emodb_reader_end_to_end(tmp_path):
    summary = prepare_corpus("emodb", emodb_tree(tmp_path / "emodb"), tmp_path / "out", progress=False,
                             log=lambda m: None)
    info = open_prepared("emodb", tmp_path / "out").info
    check_emodb(summary, info, 35, {"low_negative": 15, "low_neutral": 5, "low_positive": 0, "high_negative": 10,
                                    "high_neutral": 0, "high_positive": 5})


@pytest.mark.skipif(not os.environ.get("EXHUBERT_EMODB"),
                    reason="set EXHUBERT_EMODB=/path/to/emodb-subset to check the reader on the real files")
def test_emodb_real_subset(tmp_path):
    summary = prepare_corpus("emodb", os.environ["EXHUBERT_EMODB"], tmp_path, progress=False, log=lambda m: None)
    info = open_prepared("emodb", tmp_path).info
    # README counts: W 60, N 43, L 35, F 34, T 30, A 29, E 12
    check_emodb(summary, info, 243, {"low_negative": 35 + 12 + 30, "low_neutral": 43, "low_positive": 0,
                                     "high_negative": 60 + 29, "high_neutral": 0, "high_positive": 34})
    assert sorted(sum((info["splits"][s]["speakers"] for s in info["splits"]), [])) == ["03", "08", "09", "10", "11"]
    assert [summary["splits"][s]["n"] for s in ("train", "validation", "test")] == [150, 55, 38]  # as before TFDS
    import tensorflow_datasets as tfds

    builder = tfds.builder("emodb", data_dir=str(tmp_path))
    assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
        "train": 150, "validation": 55, "test": 38}


def test_workers_below_one_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--corpus", "emodb", "--source", str(tmp_path), "--workers", "-1"])
    assert exit_info.value.code == 2 and "--workers must be at least 1" in capsys.readouterr().err


class FullDiskWriter:
    """array_record's writer on a disk that fills: records land in part, and closing fails as the real one does
    (the C++ writer reports the OS error in its message)."""

    def __init__(self, path, options):
        self.path, self.file = path, open(path, "wb")  # noqa: SIM115 - closed by close(), as the real writer

    def write(self, record):
        self.file.write(record[:64])

    def close(self):
        self.file.close()
        raise RuntimeError(f"write() failed: No space left on device; writing {self.path}; at byte 1048576; Failed to "
                           "close chunk_writer")


def prepared_files(out):
    """{relative path: bytes} of every file under a prepared-data folder (dot-folders included)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flags", [["--force"], ["--seed", "1"]])  # a forced rebuild, and one of new options
def test_a_full_disk_is_one_line_and_keeps_the_previous_copy(tmp_path, monkeypatch, capsys, flags):
    from array_record.python import array_record_module

    manifest = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    args = ["--corpus", "toy", "--manifest", str(manifest), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = prepared_files(out)
    capsys.readouterr()
    monkeypatch.setattr(array_record_module, "ArrayRecordWriter", FullDiskWriter)
    assert main(args + flags) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot write {out / 'toy'} (No space left on device: needs about "), lines
    assert "nothing there was changed" in lines[0]
    assert prepared_files(out) == before  # the previous copy, byte for byte, and no temporary folder left
    assert open_prepared("toy", out).info["seed"] == 0
