"""Audio decoding: read, mix to mono, resample to 16 kHz, validate; and the compact int16 storage form."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from exhubert_jax.data.errors import AudioError

SAMPLE_RATE = 16000
MIN_SAMPLES = 400  # one HuBERT CNN frame (25 ms at 16 kHz)
INFERENCE_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif", ".au")  # what a folder is read for
DECODING_VERSION = 2  # bump when a change to the decoding below changes any stored sample or which files are refused
# (2: files cut short, whose header declares more audio than they hold, are refused)
_CONTAINERS = {(b"RIFF", b"WAVE"): ("little", b"data"), (b"RIFX", b"WAVE"): ("big", b"data"),
               (b"FORM", b"AIFF"): ("big", b"SSND"), (b"FORM", b"AIFC"): ("big", b"SSND")}  # byte order, audio chunk


def decoding_rule() -> dict:
    """What decides the stored audio: the decoding's version, the rate and the shortest file (part of corpus
    versions)."""
    return {"version": DECODING_VERSION, "sample_rate": SAMPLE_RATE, "min_samples": MIN_SAMPLES}


def _declared_audio(path: Path) -> tuple[int, int] | None:
    """(bytes the audio chunk declares, bytes the file holds from its start) of a WAVE (RIFF, RIFX) or AIFF/AIFC
    file; None for other formats, no audio chunk, or a size a streaming writer left open (0 or 0xFFFFFFFF)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if (layout := _CONTAINERS.get((head[:4], head[8:12]))) is None:
            return None
        order, audio_chunk = layout
        end = os.fstat(f.fileno()).st_size
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], order)
            if chunk[:4] == audio_chunk:
                return None if size in (0, 0xFFFFFFFF) else (size, end - f.tell())
            f.seek(size + (size & 1), 1)  # chunks are padded to an even length
    return None


def check_audio_file(path: str | Path) -> Path:
    """The path, after the checks its bytes allow before any decoding (the one place they are made, for every reader
    of audio); AudioError(path, reason) when it is missing, holds 0 bytes, or is cut short: its header declares more
    audio than it holds, which libsndfile would silently read as a shorter file."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(str(path), "file not found")
    if path.stat().st_size == 0:
        raise AudioError(str(path), "empty file (0 bytes)")
    try:
        declared = _declared_audio(path)
    except OSError as e:  # no permission, a read error of the disk
        raise AudioError(str(path), f"unreadable ({type(e).__name__}: {e.strerror or e})") from None
    if declared is not None and declared[1] < declared[0]:
        raise AudioError(str(path), f"truncated: the header declares {declared[0]:,} bytes of audio, the file holds "
                                    f"{declared[1]:,} (cut short by a failed copy?)")
    return path


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the file's rate; soundfile first, librosa/audioread as fallback."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as first:  # noqa: BLE001 - any decoder failure becomes an AudioError below
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, sr = librosa.load(str(path), sr=None, mono=False)
            data = np.atleast_2d(np.asarray(data, dtype=np.float32))
            return data.T if data.shape[0] < data.shape[-1] else data, int(sr)
        except Exception:  # noqa: BLE001
            raise AudioError(str(path), f"unreadable ({type(first).__name__}: {first})") from None


def load_audio(path: str | Path, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform at target_sr; raises AudioError(path, reason) for missing, truncated (check_audio_file),
    unreadable, empty, too short (< 400 samples at target_sr) or non-finite audio."""
    path = check_audio_file(path)
    data, sr = _decode(path)
    if data.size == 0:
        raise AudioError(str(path), "empty (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(str(path), "contains NaN or Inf samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != target_sr:
        import soxr  # what librosa.resample(res_type="soxr_hq") calls, without librosa's slow first import

        mono = soxr.resample(mono, sr, target_sr, quality="HQ")
    if mono.shape[0] < MIN_SAMPLES:
        raise AudioError(str(path), f"too short: {mono.shape[0]} samples at {target_sr} Hz (< {MIN_SAMPLES})")
    return np.ascontiguousarray(mono, dtype=np.float32)


def source_rate(path: str | Path) -> int | None:
    """A readable audio file's own sample rate from its header (None when soundfile cannot tell)."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - formats only the fallback decoder reads
        return None


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] to int16 PCM (clipped)."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM to float32 in [-1, 1)."""
    return pcm.astype(np.float32) * np.float32(1.0 / 32768.0)


def input_files(path_or_dir: str | Path) -> list[Path]:
    """The file itself, or every audio file (by extension, INFERENCE_EXTS) under a directory, sorted."""
    from exhubert_jax.data.sources.readers import audio_files

    path = Path(path_or_dir)
    return audio_files(path, INFERENCE_EXTS) if path.is_dir() else [path]
