"""The user's noise recordings and room impulse responses (--noise-dir, --rir-dir: training augmentation and evaluation
under degradation), decoded and resampled once (data.audio.load_audio) into one array of fixed shape each: noise as
segments of a given length, impulse responses from their direct path on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exhubert_jax.data.audio import INFERENCE_EXTS, SAMPLE_RATE, input_files, load_audio
from exhubert_jax.data.errors import DataError

NOISE_SECONDS = 600.0  # at most this much noise is kept (files taken in a seeded order until it is reached)
RIR_SECONDS = 1.0  # an impulse response is kept from its peak (the direct path) for this long
MAX_RIRS = 512  # at most this many impulse responses are kept (taken in a seeded order)


class RecordingsError(DataError, ValueError):
    """A noise or impulse-response folder that cannot be used (missing, no audio in it, every recording silent)."""


def audio_files_of(directory: str | Path, flag: str) -> list[Path]:
    """The audio files under a folder (sorted); an RecordingsError naming the flag when it is missing or holds none."""
    path = Path(directory)
    if not path.is_dir():
        raise RecordingsError(f"{flag} {directory}: no such folder")
    files = input_files(path)
    if not files:
        raise RecordingsError(f"{flag} {directory}: no audio files ({', '.join(sorted(INFERENCE_EXTS))}) in it")
    return files


def holds_audio(directory: str | Path) -> bool:
    """Whether a folder exists and holds an audio file (the check of --noise-dir and --rir-dir as they are read)."""
    return Path(directory).is_dir() and bool(input_files(directory))


def _seeded(files: list[Path], seed: int) -> list[Path]:
    """The files in an order drawn from the run's seed."""
    return [files[i] for i in np.random.default_rng(seed).permutation(len(files))]


def noise_bank(directory: str | Path, segment: int, seed: int, seconds: float = NOISE_SECONDS) -> np.ndarray:
    """(N, segment) float32: the folder's recordings cut into segments (a shorter recording repeated to one),
    silent segments left out, at most `seconds` in all."""
    limit = max(1, int(seconds * SAMPLE_RATE) // segment)
    kept: list[np.ndarray] = []
    for path in _seeded(audio_files_of(directory, "--noise-dir"), seed):
        audio = load_audio(path)
        audio = np.resize(audio, segment) if len(audio) < segment else audio[:len(audio) // segment * segment]
        kept += [s for s in audio.reshape(-1, segment) if np.any(s)]
        if len(kept) >= limit:
            break
    if not kept:
        raise RecordingsError(f"--noise-dir {directory}: every recording in it is silent")
    return np.stack(kept[:limit]).astype(np.float32)


def rir_bank(directory: str | Path, seed: int, seconds: float = RIR_SECONDS, limit: int = MAX_RIRS) -> np.ndarray:
    """(M, seconds x 16 kHz) float32: each recording from its largest sample (the direct path) on, cut or
    zero-padded to that length, at unit energy; silent ones left out, at most `limit`."""
    length = round(seconds * SAMPLE_RATE)
    kept: list[np.ndarray] = []
    for path in _seeded(audio_files_of(directory, "--rir-dir"), seed)[:limit]:
        audio = load_audio(path)
        rir = np.zeros(length, np.float32)
        tail = audio[int(np.argmax(np.abs(audio))):][:length]
        rir[:len(tail)] = tail
        energy = float(np.sum(rir.astype(np.float64) ** 2))
        if energy > 0:
            kept.append(rir / np.float32(np.sqrt(energy)))
    if not kept:
        raise RecordingsError(f"--rir-dir {directory}: every recording in it is silent")
    return np.stack(kept).astype(np.float32)
