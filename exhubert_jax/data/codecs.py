"""Degradations done on the host, one utterance at a time (evaluate.py --degrade codec and telephone): a real encode
and decode round trip through libsndfile (soundfile) in memory, and the telephone band. No JAX: a worker process
imports this module alone. Every function keeps the utterance's length and alignment (libsndfile removes the
decoders' delay; resampling is zero-phase)."""

from __future__ import annotations

import io

import numpy as np

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.loading.batching import normalize

# name -> (libsndfile format, subtype, the rate it is encoded at, (lowest, highest) kbps its compression level spans
# from level 1 to level 0: MPEG-2 Layer III at 16 kHz, Opus), or None when it has no bitrate to set
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III", SAMPLE_RATE, (8, 160)),
          "opus": ("OGG", "OPUS", SAMPLE_RATE, (6, 256)),
          "vorbis": ("OGG", "VORBIS", SAMPLE_RATE, None),
          "gsm": ("WAV", "GSM610", 8000, None)}
MP3_KBPS = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)  # MPEG-2 Layer III's (8 kbps fails to set)
MAX_DELAY = 4096  # the longest decoder delay (samples at 16 kHz) that align() looks for
PEAK = 0.5  # an utterance enters a codec at this peak (-6 dBFS): the level of a stored file, never clipped
TELEPHONE_RATE, TELEPHONE_BAND = 8000, (300.0, 3400.0)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 audio at another rate (librosa's soxr_hq: band-limited, zero-phase); as it is when the rates match."""
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(audio.astype(np.float32), orig_sr=rate_in, target_sr=rate_out,
                            res_type="soxr_hq").astype(np.float32)


def fit(audio: np.ndarray, n: int) -> np.ndarray:
    """The first n samples, zero-padded when shorter."""
    out = np.zeros(n, np.float32)
    out[:min(n, len(audio))] = audio[:n]
    return out


def align(decoded: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The decoded audio from where it lines up with the original: the delay in 0..MAX_DELAY samples with the largest
    cross-correlation (0 when libsndfile already removed the decoder's delay; LAME's at 32 kbps and below, where it
    encodes at 8 kHz, is 1105 samples), cut to the original's length."""
    from scipy.signal import correlate

    span = min(MAX_DELAY, max(len(decoded) - 1, 0)) + 1
    c = correlate(decoded[:len(original) + span], original, mode="full", method="fft")[len(original) - 1:]
    return fit(decoded[int(np.argmax(c[:span])):], len(original))


def compression_level(name: str, kbps: float | None, quality: float | None) -> float | None:
    """soundfile's compression_level (0 best .. 1 smallest) for a bitrate (mp3, opus) or a quality (vorbis, 1 best);
    None: the library's default."""
    if kbps is not None:
        lo, hi = CODECS[name][3]
        return (hi - kbps) / (hi - lo)
    return None if quality is None else 1.0 - quality


def codec_round_trip(audio: np.ndarray, name: str, kbps: float | None = None,
                     quality: float | None = None) -> np.ndarray:
    """16-kHz float32 audio encoded with a codec (CODECS) and decoded in memory, at the codec's rate (GSM 6.10:
    8 kHz, resampled there and back), at its original level and length. It is encoded at a peak of PEAK."""
    fmt, subtype, rate, _ = CODECS[name]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak == 0:
        return np.zeros(len(audio), np.float32)
    level = compression_level(name, kbps, quality)
    extra = {} if level is None else {"compression_level": level}
    if kbps is not None and name == "mp3":
        extra["bitrate_mode"] = "CONSTANT"
    buffer = io.BytesIO()
    import soundfile as sf

    sf.write(buffer, resample(audio * (PEAK / peak), SAMPLE_RATE, rate), rate, format=fmt, subtype=subtype, **extra)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return align(resample(decoded, rate, SAMPLE_RATE), audio * np.float32(PEAK / peak)) * np.float32(peak / PEAK)


def telephone(audio: np.ndarray) -> np.ndarray:
    """16-kHz audio through a telephone channel: resampled to 8 kHz, band-passed to 300-3400 Hz (4th-order
    Butterworth, forward and backward: zero-phase), resampled back; same length."""
    from scipy.signal import butter, sosfiltfilt

    narrow = resample(audio, SAMPLE_RATE, TELEPHONE_RATE)
    sos = butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    band = sosfiltfilt(sos, narrow, padlen=min(len(narrow) - 1, 3 * (2 * len(sos) + 1))) if len(narrow) > 1 \
        else narrow
    return fit(resample(np.asarray(band, np.float32), TELEPHONE_RATE, SAMPLE_RATE), len(audio))


def degrade_rows(x: np.ndarray, lengths: np.ndarray, kind: str, options: dict) -> np.ndarray:
    """A padded batch (B, T) with each row's first `lengths` samples degraded ('codec': codec_round_trip with
    options name, kbps, quality; 'telephone') and normalised as the feature extractor does; padding zero."""
    out = np.zeros_like(x, dtype=np.float32)
    for row, n in enumerate(lengths):
        if n <= 0:
            continue
        audio = x[row, :n]
        y = telephone(audio) if kind == "telephone" else codec_round_trip(
            audio, options["name"], options.get("kbps"), options.get("quality"))
        out[row, :n] = normalize(y)
    return out
