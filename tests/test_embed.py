"""Embeddings equal the model's own hidden states (per frame, averaged, chunked, weighted, projector); bounded
compiled shapes; the embed CLI on audio files and on a prepared corpus with the linear probe."""

import csv
import json

import jax
import numpy as np
import pytest
import soundfile as sf

from exhubert_jax import HubertForSequenceClassification, init_params, preset, save_pretrained
from exhubert_jax.data.loading.batching import normalize
from exhubert_jax.inference import embedding_files as embed, embeddings as emb

CHUNK = 1.0  # seconds: the 1.6 s clip below is cut into two chunks of 0.8 s, as long as the second clip


@pytest.fixture(scope="module")
def tiny():
    cfg = preset("tiny")
    return HubertForSequenceClassification(cfg), init_params(cfg, 0)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (4000, 12800, 25600)]


_FORWARD = {}


def alone(model, params, audio):
    """The model's own outputs for one normalised clip, batch 1, nothing padded (one jitted forward per model)."""
    if model not in _FORWARD:
        _FORWARD[model] = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m, output_hidden_states=True))
    x = normalize(audio)[None]
    return _FORWARD[model](params, x, np.ones(x.shape, np.int32))


@pytest.fixture(scope="module")
def reference(tiny, clips):
    """Hidden states (L + 1, T, D) of each clip on its own; the long clip's two chunks on their own, concatenated."""
    model, params = tiny
    parts = [[clips[0]], [clips[1]], np.array_split(clips[2], 2)]
    return [np.concatenate([np.asarray(alone(model, params, p).hidden_states)[:, 0] for p in ps], axis=1)
            for ps in parts]


@pytest.mark.parametrize("layer", [pytest.param(0, marks=pytest.mark.slow), "last",
                                   pytest.param("all", marks=pytest.mark.slow)])
def test_frames_equal_the_hidden_states(tiny, clips, reference, layer):
    model, params = tiny
    embedder = emb.Embedder(model, layer)
    frames, counts = emb.embed_audio(embedder, params, clips, "frame", CHUNK, batch_size=4)
    means, _ = emb.embed_audio(embedder, params, clips, "utterance", CHUNK, batch_size=4)
    for got, mean, h, n in zip(frames, means, reference, counts):
        expected = np.moveaxis(h, 0, 1) if layer == "all" else h[-1 if layer == "last" else layer]
        assert got.shape == expected.shape and n == len(expected)
        np.testing.assert_allclose(got, expected, atol=2e-4)
        np.testing.assert_allclose(mean, expected.mean(axis=0), atol=2e-4)


@pytest.mark.slow
def test_projector_output_pooled_is_the_classifier_input(tiny, clips):
    model, params = tiny
    pooled, _ = emb.embed_audio(emb.Embedder(model, "projector"), params, clips[:2], "utterance", CHUNK)
    for p, audio in zip(pooled, clips[:2]):
        c = params["classifier"]
        np.testing.assert_allclose(p @ np.asarray(c["kernel"]) + np.asarray(c["bias"]),
                                   np.asarray(alone(model, params, audio).logits[0]), atol=2e-4)


@pytest.mark.slow
def test_weighted_layers_use_the_learnt_weights():
    cfg = preset("tiny", use_weighted_layer_sum=True)
    model, params = HubertForSequenceClassification(cfg), init_params(cfg, 1)
    params = {**params, "layer_weights": np.array([0.5, -1.0, 2.0], np.float32)}
    audio = (0.1 * np.random.default_rng(1).standard_normal(6000)).astype(np.float32)
    got, _ = emb.embed_audio(emb.Embedder(model, "weighted"), params, [audio], "frame", CHUNK)
    w = np.exp(params["layer_weights"]) / np.exp(params["layer_weights"]).sum()
    want = np.einsum("l,ltd->td", w, np.asarray(alone(model, params, audio).hidden_states)[:, 0])
    np.testing.assert_allclose(got[0], want, atol=2e-4)


def test_layer_specs_are_checked(tiny):
    cfg = tiny[0].config
    assert emb.check_layer("2", cfg) == 2 and emb.check_layer("all", cfg) == "all"
    for bad, message in (("3", "hidden states 0..2"), ("top", "must be a number"), ("weighted", "no learnt layer")):
        with pytest.raises(emb.EmbeddingError, match=message):
            emb.check_layer(bad, cfg)


@pytest.mark.slow
def test_compiled_shapes_stay_bounded(tiny):
    model, params = tiny
    rng = np.random.default_rng(2)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in rng.integers(500, 40000, 30)]
    embedder = emb.Embedder(model, "last")
    emb.embed_audio(embedder, params, clips, "utterance", CHUNK, batch_size=4)
    assert len(set(embedder.compiled_shapes)) <= 3 and all(s[0] == 4 for s in embedder.compiled_shapes)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("run")
    save_pretrained(root / "best", tiny[0].config, tiny[1])
    return root


def test_cli_audio_folder_frame_level(run, clips, tmp_path, capsys):
    for i, c in enumerate(clips):
        sf.write(tmp_path / f"c{i}.wav", c, 16000)
    out = tmp_path / "emb"
    code = embed.main(["--checkpoint", str(run), "--audio", str(tmp_path), "--level", "frame", "--layer", "1",
                       "--out", str(out), "--chunk-seconds", str(CHUNK)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert summary["files"] == 3 and [r["file"] for r in rows] == [str(tmp_path / f"c{i}.wav") for i in range(3)]
    for r in rows:
        a = np.load(out / r["array"])
        assert a.shape == (int(r["frames"]), 32)
    assert embed.main(["--checkpoint", str(run), "--audio", str(tmp_path), "--layer", "weighted",
                       "--out", str(out)]) == 2
    assert "no learnt layer weights" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_corpus_all_splits_and_probe(run, tmp_path, capsys):
    from exhubert_jax.data.demo.synthetic import prepare_demo

    prepare_demo(tmp_path / "data", seed=0, n_per_class=1, n_speakers=4, log=lambda msg: None)
    out = tmp_path / "emb"
    argv = ["--checkpoint", str(run), "--corpus", "demo-a", "--data-dir", str(tmp_path / "data"), "--out", str(out),
            "--probe", "logreg", "--bootstrap", "100"]
    assert embed.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(open(out / "index.csv")))
    x = np.load(out / "embeddings.npy")
    assert x.shape == (len(rows), 32) and {r["split"] for r in rows} == {"train", "validation", "test"}
    assert all(r["speaker"] and r["label"] for r in rows)
    p = summary["probe"]
    assert p["n"] == {"train": 12, "validation": 6, "test": 6}
    assert p["validation_uar"][str(p["C"])] == max(p["validation_uar"].values())
    assert 0 <= p["test_uar"] <= 1 and p["test_interval"]["resamples"] == 100
    assert json.loads((out / "probe.json").read_text())["C"] == p["C"]
    assert embed.main(argv + ["--level", "frame"]) == 2
    assert "--probe needs --corpus, --level utterance" in capsys.readouterr().err


@pytest.mark.parametrize("level", ["utterance", "frame"])
def test_embeddings_are_written_whole(level, tmp_path, monkeypatch):
    """A write that fails half-way (a full disk as index.csv is written, after the arrays) leaves the previous
    output as it was and no partial folder beside it, with one error naming the output."""
    import csv as csv_module

    from exhubert_jax.inference import embeddings as emb
    from exhubert_jax.process.output_dirs import DiskFullError

    rows = [{"file": f"f{i}.wav", "split": "", "label": "", "native_label": "", "speaker": "", "frames": 2}
            for i in range(2)]
    out = tmp_path / "emb"
    emb.write_embeddings(out, [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)], rows, level)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv_module.DictWriter, "writerows", full)
    with pytest.raises(DiskFullError, match="index.csv"):
        emb.write_embeddings(out, [np.full((2, 3), 2, np.float32)] * 2, rows, level)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["emb"] and not list(out.glob(".*"))
