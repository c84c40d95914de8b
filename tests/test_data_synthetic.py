"""Synthetic demo corpora: deterministic, clearly synthetic, varied in character, and learnable."""

import json

import numpy as np
import pytest
import soundfile as sf

from exhubert_jax.data.demo.synthetic import main, make_demo_corpora, prepare_demo
from exhubert_jax.data.loading.batching import normalize
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.sources.corpora import get_corpus
from exhubert_jax.data.sources.labels import CLASSES

NAMES = ("demo-a", "demo-b", "demo-c")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summaries = prepare_demo(root / "prepared", source_dir=root / "src", log=lambda m: None)
    return root, summaries


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = make_demo_corpora(tmp_path / "a", seed=3, n_per_class=1, n_speakers=3)
    b = make_demo_corpora(tmp_path / "b", seed=3, n_per_class=1, n_speakers=3)
    c = make_demo_corpora(tmp_path / "c", seed=4, n_per_class=1, n_speakers=3)
    for name in NAMES:
        files = sorted(p.relative_to(a[name].parent) for p in a[name].parent.rglob("*") if p.is_file())
        assert len(files) == 1 + 6 * 3
        for f in files:
            assert (a[name].parent / f).read_bytes() == (b[name].parent / f).read_bytes(), f
        wav = next(f for f in files if f.suffix == ".wav")
        assert (a[name].parent / wav).read_bytes() != (c[name].parent / wav).read_bytes()


def test_corpora_differ_in_character(demo):
    root, _ = demo
    infos = {n: sf.info(str(next((root / "src" / n / "wav").glob("*.wav")))) for n in NAMES}
    assert [(infos[n].samplerate, infos[n].channels) for n in NAMES] == [(16000, 1), (22050, 1), (16000, 2)]
    for n in NAMES:
        assert get_corpus(n).synthetic and "SYNTHETIC" in get_corpus(n).notes


def test_prepared_demo(demo):
    root, summaries = demo
    assert set(summaries) == set(NAMES)
    for name, s in summaries.items():
        assert s["n_examples"] == 6 * 4 * 3 and s["n_skipped"] == 0
        assert [s["splits"][k]["speakers"] for k in ("train", "validation", "test")] == [2, 1, 1]
        for split in s["splits"].values():
            assert all(split["classes"][c] > 0 for c in CLASSES)  # every class in every split
        info = open_prepared(name, root / "prepared").info
        assert info["synthetic"] and info["speaker_independent"]
    logs = []
    assert prepare_demo(root / "prepared", source_dir=root / "src", log=logs.append) == summaries
    assert len(logs) == 3 and all("up to date" in line for line in logs)  # regenerating keeps files: no-op


def _features(x):
    """Crude log-spectral band statistics and energy dynamics of a normalised waveform."""
    x = normalize(x)
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160]
    spec = np.log(np.abs(np.fft.rfft(frames * np.hanning(400), axis=1)) + 1e-3)
    bands = np.stack([b.mean(1) for b in np.array_split(spec, 20, axis=1)], 1)
    energy = np.log((frames ** 2).mean(1) + 1e-6)
    return np.r_[bands.mean(0), bands.std(0), energy.std(), np.abs(np.diff(energy)).mean()]


def test_classes_are_learnable_across_speakers(demo):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    root, _ = demo

    def data(split):
        xs = [(_features(ex["audio"]), ex["label"]) for n in NAMES
              for s in [open_prepared(n, root / "prepared").split(split)] for ex in (s[i] for i in range(len(s)))]
        return np.stack([x for x, _ in xs]), np.array([y for _, y in xs])

    (xtr, ytr), (xte, yte) = data("train"), data("test")
    scale = StandardScaler().fit(xtr)
    model = LogisticRegression(max_iter=3000).fit(scale.transform(xtr), ytr)
    accuracy = (model.predict(scale.transform(xte)) == yte).mean()
    assert accuracy >= 0.75, accuracy  # held-out speakers; chance is 1/6


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n-per-class", "1", "--n-speakers", "3"]) == 0
    manifests = json.loads(capsys.readouterr().out)
    assert sorted(manifests) == list(NAMES)
    assert all((tmp_path / n / "manifest.csv").is_file() for n in NAMES)
