"""SYNTHETIC demo corpora: procedurally generated voiced sounds whose prosody depends on the 6 classes, with
arousal / valence / dominance ratings scattered around a point per class.

Not speech and not emotion data: a deterministic stand-in that exercises the whole pipeline (manifest reader,
resampling, mono mixing, splits, batching) and that a tiny model can learn. Per class: F0 level and range,
final rise, speaking (syllable) rate, energy and its contrast, spectral tilt and jitter; per speaker: F0, vocal
tract length, tilt and rate offsets; per utterance: random variation around both.

    python -m exhubert_jax.data.demo.synthetic --out DIR [--prepare DATA_DIR]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.data.demo.synthetic"))

import argparse
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from exhubert_jax.data.prepare.splits import derive_seed
from exhubert_jax.data.sources.labels import CLASSES
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import command_parser, option, parse

# class -> (F0 x speaker, F0 range, final rise, syllables/s, energy, envelope contrast, tilt dB/octave, jitter,
#           formant scale: raised by smiling in the positive classes)
PROSODY: dict[str, tuple[float, ...]] = {
    "low_negative": (0.78, 0.05, -0.10, 2.5, 0.35, 0.35, -17.0, 0.035, 0.97),
    "low_neutral": (1.00, 0.08, -0.05, 4.2, 0.55, 0.60, -13.0, 0.004, 1.00),
    "low_positive": (1.18, 0.35, 0.05, 3.0, 0.50, 0.45, -9.0, 0.004, 1.10),
    "high_negative": (1.35, 0.25, -0.15, 5.8, 0.95, 1.00, -4.0, 0.018, 0.97),
    "high_neutral": (1.65, 0.25, 0.60, 4.2, 0.80, 0.80, -9.0, 0.004, 1.00),
    "high_positive": (1.40, 0.55, 0.05, 5.2, 0.85, 0.90, -6.0, 0.008, 1.10),
}
# class -> its point in (arousal, valence, dominance) on [0, 1]; each utterance's ratings scatter around it by
# DIMS_NOISE (drawn from a stream of its own, so the audio is the same with or without them)
DIMS_CENTRE: dict[str, tuple[float, float, float]] = {
    "low_negative": (0.25, 0.20, 0.30), "low_neutral": (0.30, 0.50, 0.45), "low_positive": (0.25, 0.80, 0.50),
    "high_negative": (0.75, 0.20, 0.70), "high_neutral": (0.70, 0.50, 0.55), "high_positive": (0.75, 0.80, 0.65),
}
DIMS_NOISE = 0.06
_VOWELS_A = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))
_VOWELS_B = ((660, 1720, 2410), (400, 1920, 2560), (490, 1350, 2250), (440, 1020, 2240), (310, 2020, 2960))


@dataclass(frozen=True)
class DemoCorpus:
    """Character of one synthetic corpus."""

    name: str
    sample_rate: int
    channels: int
    f0_range: tuple[float, float]
    noise: float
    vowels: tuple[tuple[int, int, int], ...]
    labels: tuple[str, ...]  # native label per class, in CLASSES order (mapped by the generic table)


DEMO_CORPORA = (
    DemoCorpus("demo-a", 16000, 1, (130.0, 190.0), 0.002, _VOWELS_A,
               ("sad", "neutral", "calm", "angry", "surprised", "happy")),
    DemoCorpus("demo-b", 22050, 1, (95.0, 135.0), 0.005, _VOWELS_A,
               ("bored", "neutral", "tender", "fear", "surprise", "joy")),
    DemoCorpus("demo-c", 16000, 2, (170.0, 240.0), 0.02, _VOWELS_B, CLASSES),
)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average (same length)."""
    width = max(1, int(width))
    c = np.cumsum(np.pad(x, (width // 2 + 1, width - width // 2 - 1), mode="edge"))
    return (c[width:] - c[:-width]) / width


def synthesize(rng: np.random.Generator, cls: str, speaker: dict[str, float], corpus: DemoCorpus,
               duration: float) -> np.ndarray:
    """One utterance, float32 (samples, channels) at the corpus rate."""
    f0_mult, f0_range, rise, rate, energy, contrast, tilt, jitter, smile = PROSODY[cls]
    sr = corpus.sample_rate
    n = int(duration * sr)
    t = np.arange(n) / sr
    rate = rate * speaker["rate"] * rng.uniform(0.9, 1.1)
    n_syl = max(2, int(round(duration * rate)))
    centres = (np.arange(n_syl) + 0.5 + rng.uniform(-0.15, 0.15, n_syl)) * duration / n_syl
    width = 0.3 * duration / n_syl
    accents = (rng.uniform(-1, 1, n_syl)[:, None] * np.exp(-0.5 * ((t[None] - centres[:, None]) / width) ** 2)).sum(0)
    x = t / duration
    contour = 1 + f0_range * rng.uniform(0.8, 1.2) * accents + rise * x ** 2 - 0.05 * x
    f0 = speaker["f0"] * f0_mult * rng.uniform(0.95, 1.05) * np.clip(contour, 0.5, 2.0)
    f0 = f0 * (1 + jitter * _smooth(rng.standard_normal(n), sr / 200) * np.sqrt(sr / 200))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # vowel formants per syllable, glided, scaled by the speaker's vocal tract
    vowel = np.asarray(corpus.vowels, float)[rng.integers(0, len(corpus.vowels), n_syl)] * speaker["vtl"] * smile
    syl_of = np.minimum((t * n_syl / duration).astype(int), n_syl - 1)
    formants = np.stack([_smooth(vowel[syl_of, i], sr * 0.03) for i in range(3)], 1)
    slope = tilt + speaker["tilt"] + rng.uniform(-1.5, 1.5)
    frames = np.arange(0, n, sr // 200)  # harmonic gains vary slowly: compute them every 5 ms, interpolate
    signal = np.zeros(n)
    z = np.exp(1j * phase)
    zk = z.copy()  # exp(i k phase) by repeated multiplication: cheaper than sin(k * phase)
    for k in range(1, min(40, int(0.45 * sr / f0.max())) + 1):
        fk = k * f0[frames, None]
        gain = (1.0 / (1 + ((fk - formants[frames]) / np.array([60.0, 100.0, 140.0])) ** 2)).sum(1) + 0.05
        signal += 10 ** (slope * np.log2(k) / 20) * np.interp(t, t[frames], gain) * zk.imag
        zk *= z
    # syllable envelope: voiced nuclei with gaps; contrast sets how deep the dips are
    pos = (t * n_syl / duration) % 1.0
    env = np.sin(np.pi * np.clip((pos - 0.1) / 0.75, 0, 1)) ** 2
    env = (1 - contrast) * 0.3 + contrast * env
    env *= energy * (1 + 0.1 * _smooth(rng.standard_normal(n), sr / 50) * np.sqrt(sr / 50))
    voiced = signal / (np.abs(signal).max() + 1e-9) * env
    voiced += 0.02 * energy * env * rng.standard_normal(n)  # aspiration
    out = voiced + corpus.noise * rng.standard_normal(n)
    if corpus.channels == 2:
        out = np.stack([out, 0.8 * np.roll(out, int(0.0005 * sr)) + corpus.noise * rng.standard_normal(n)], 1)
    out = out.reshape(n, -1)
    return (0.9 * out / max(1.0, np.abs(out).max() / 0.99)).astype(np.float32)


def demo_dims(seed: int, corpus: str, speaker: str, cls: str, k: int) -> tuple[str, str, str]:
    """Arousal, valence, dominance of one demo utterance: its class's point plus noise, clipped to [0, 1]."""
    rng = np.random.default_rng(derive_seed(seed, corpus, speaker, cls, k, "dims"))
    values = np.clip(np.asarray(DIMS_CENTRE[cls]) + DIMS_NOISE * rng.standard_normal(3), 0.0, 1.0)
    return tuple(f"{v:.4f}" for v in values)


def _speakers(corpus: DemoCorpus, seed: int, n_speakers: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(derive_seed(seed, corpus.name, "speakers"))
    lo, hi = corpus.f0_range
    return {f"{corpus.name[-1]}{i + 1:02d}": {"f0": rng.uniform(lo, hi), "vtl": rng.uniform(0.9, 1.1),
                                             "tilt": rng.uniform(-2, 2), "rate": rng.uniform(0.9, 1.1)}
            for i in range(n_speakers)}


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write only when the content differs (keeps mtimes, so preparing again is a no-op)."""
    if not path.is_file() or path.read_bytes() != data:
        path.write_bytes(data)


def make_demo_corpora(out_dir: str | Path, seed: int = 0, n_per_class: int = 3, n_speakers: int = 4
                      ) -> dict[str, Path]:
    """Write the demo corpora (wav files + manifest.csv each) under out_dir; returns {name: manifest path}."""
    import soundfile as sf

    manifests = {}
    for corpus in DEMO_CORPORA:
        root = Path(out_dir) / corpus.name
        (root / "wav").mkdir(parents=True, exist_ok=True)
        rows = []
        for spk, params in _speakers(corpus, seed, n_speakers).items():
            for cls, label in zip(CLASSES, corpus.labels):
                for k in range(n_per_class):
                    rng = np.random.default_rng(derive_seed(seed, corpus.name, spk, cls, k))
                    audio = synthesize(rng, cls, params, corpus, rng.uniform(1.0, 3.0))
                    buf = io.BytesIO()
                    sf.write(buf, audio, corpus.sample_rate, format="WAV", subtype="PCM_16")
                    rel = f"wav/{spk}_{label}_{k:02d}.wav"
                    _write_if_changed(root / rel, buf.getvalue())
                    rows.append((rel, label, spk, *demo_dims(seed, corpus.name, spk, cls, k)))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([("path", "label", "speaker", "arousal", "valence",
                                                          "dominance"), *rows])
        _write_if_changed(root / "manifest.csv", text.getvalue().encode())
        manifests[corpus.name] = root / "manifest.csv"
    return manifests


def prepare_demo(data_dir: str | Path, seed: int = 0, n_per_class: int = 3, n_speakers: int = 4,
                 source_dir: str | Path | None = None, force: bool = False, progress: bool = False,
                 log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Generate the demo corpora (under data_dir/_demo_sources by default) and prepare them into data_dir."""
    from exhubert_jax.data.prepare.corpus import prepare_corpus

    source_dir = Path(source_dir) if source_dir is not None else Path(data_dir) / "_demo_sources"
    manifests = make_demo_corpora(source_dir, seed, n_per_class, n_speakers)
    return {name: prepare_corpus(name, out=data_dir, manifest=path, seed=seed, force=force, progress=progress,
                                 log=log) for name, path in manifests.items()}


@dataclass
class DemoOptions:
    """The command's options (a --config file's keys are these names)."""

    out: str | None = option(None, help="folder for the generated wav files and manifests")  # required (main)
    seed: int = option(0, type=int)
    n_per_class: int = option(3, type=int, help="utterances per class per speaker (default 3)")
    n_speakers: int = option(4, type=int, help="speakers per corpus (default 4)")
    prepare: str | None = option(None, metavar="DATA_DIR", help="also prepare them into DATA_DIR")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags over --config's values (flags win); --out is required from either."""
    p = command_parser(__doc__, DemoOptions, prog="python -m exhubert_jax.data.demo.synthetic")
    args = parse(p, argv, DemoOptions)
    if args.out is None:
        p.error("the following arguments are required: --out")
    return args


@command
def main(argv: list[str] | None = None) -> int:
    """CLI: write the demo corpora, and optionally prepare them."""
    args = parse_args(argv)
    if args.prepare:
        summaries = prepare_demo(args.prepare, args.seed, args.n_per_class, args.n_speakers, source_dir=args.out)
        print(json.dumps(summaries))
    else:
        print(json.dumps({k: str(v) for k, v in make_demo_corpora(args.out, args.seed, args.n_per_class,
                                                                  args.n_speakers).items()}))
    return 0
