"""A robust audio fingerprint: landmark (constellation) hashes of one waveform.

Only 0-4 kHz counts (what survives a telephone-band resampling): the peaks of the 16 kHz audio's log-magnitude STFT
below 4 kHz (local maxima over +-7 bins and +-4 frames, at most PEAKS_PER_SECOND per second, loudest first,
within FLOOR_DB of the loudest) are paired with the next FAN_OUT peaks up to MAX_DT frames later, and each pair is
hashed as (f1, f2, dt) in 22 bits, anchored at f1's frame. Gain leaves every peak in place (they are relative),
trimming shifts all anchors by one offset, resampling and lossy coding move a minority of the peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16000  # prepared audio's rate
N_FFT, HOP = 1024, 256  # 15.6 Hz bins, 16 ms frames; bins 1..256 are 15.6 Hz to 4 kHz
PEAK_BINS, PEAK_FRAMES = 15, 9  # a peak is the maximum of its neighbourhood
PEAKS_PER_SECOND = 30
FLOOR_DB = 60.0  # peaks quieter than the loudest by more are noise
FAN_OUT, MAX_DT = 6, 63  # each peak pairs with the next FAN_OUT peaks, up to ~1 s later (dt fits 6 bits)
FRAME_SECONDS = HOP / RATE


@dataclass(frozen=True)
class Fingerprint:
    """One file's landmark hashes (uint32) and their anchor frames (int32), in frame order."""

    hashes: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return int(self.hashes.shape[0])


def as_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM (or float audio in [-1, 1]) as float32."""
    pcm = np.asarray(pcm)
    return pcm.astype(np.float32) / np.float32(32768.0) if np.issubdtype(pcm.dtype, np.integer) else \
        pcm.astype(np.float32)


def spectrogram(x: np.ndarray) -> np.ndarray:
    """Log magnitude (dB) of the Hann-windowed STFT, (bins 1..256, frames): 15.6 Hz to 4 kHz."""
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    n = 1 + (x.shape[0] - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(x, (n, N_FFT), (x.strides[0] * HOP, x.strides[0]))
    mag = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1))[:, 1:257]
    return 20 * np.log10(mag.T + 1e-6)


def peaks(spec: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(bins, frames) of the spectrogram's landmark peaks, in frame order."""
    from scipy.ndimage import maximum_filter

    local = (spec == maximum_filter(spec, size=(PEAK_BINS, PEAK_FRAMES), mode="constant", cval=-np.inf))
    local &= spec > max(spec.max() - FLOOR_DB, -100.0)
    f, t = np.nonzero(local)
    budget = max(1, int(np.ceil(PEAKS_PER_SECOND * seconds)))
    if f.shape[0] > budget:
        keep = np.argsort(-spec[f, t], kind="stable")[:budget]
        f, t = f[keep], t[keep]
    order = np.lexsort((f, t))
    return f[order], t[order]


def landmarks(f: np.ndarray, t: np.ndarray) -> Fingerprint:
    """Each peak paired with the next FAN_OUT peaks 1..MAX_DT frames later, hashed as f1 << 14 | f2 << 6 | dt."""
    hashes, times = [], []
    for k in range(1, FAN_OUT + 1):
        dt = t[k:] - t[:-k]
        ok = (dt >= 1) & (dt <= MAX_DT)
        hashes.append((f[:-k][ok].astype(np.uint32) << 14) | (f[k:][ok].astype(np.uint32) << 6)
                      | dt[ok].astype(np.uint32))
        times.append(t[:-k][ok].astype(np.int32))
    if not hashes:
        return Fingerprint(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    h, tt = np.concatenate(hashes), np.concatenate(times)
    order = np.argsort(tt, kind="stable")
    return Fingerprint(h[order], tt[order])


def fingerprint(pcm: np.ndarray) -> Fingerprint:
    """The landmark hashes of one 16 kHz waveform (int16 PCM or float in [-1, 1])."""
    x = as_float(pcm)
    if not np.any(x):
        return Fingerprint(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    return landmarks(*peaks(spectrogram(x), x.shape[0] / RATE))
