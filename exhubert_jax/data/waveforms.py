"""Pure JAX operations on a padded waveform batch, shared by training augmentation and evaluation under degradation:
x (B, T) and its attention mask (B, T) of 0/1, each row's valid samples first and its padding after. Every operation
keeps the padding exactly zero and measures levels over the valid samples only."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from exhubert_jax.data.audio import SAMPLE_RATE

# Generated noise colours: power spectral density falling as 1/f**exponent.
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
SINC_ZERO_CROSSINGS = 8  # half-width of the resampling kernel, in zero crossings of its sinc


def valid_power(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean square of each row over its valid samples, (B,)."""
    m = mask.astype(x.dtype)
    return jnp.sum(x * x * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)


def _tiny(x: jax.Array) -> jax.Array:
    """The smallest normal number of x's dtype (a floor for powers that divide)."""
    return jnp.asarray(jnp.finfo(x.dtype).tiny, x.dtype)


def mix_at_snr(x: jax.Array, noise: jax.Array, mask: jax.Array, snr_db: jax.Array) -> jax.Array:
    """x plus noise scaled so that, over each row's valid samples, signal power / noise power is snr_db (B,) dB."""
    m = mask.astype(x.dtype)
    noise = noise.astype(x.dtype) * m
    ratio = valid_power(x, mask) / (jnp.maximum(valid_power(noise, mask), _tiny(x)) * 10 ** (snr_db / 10))
    return (x + jnp.sqrt(ratio).astype(x.dtype)[:, None] * noise) * m


def coloured_noise(key: jax.Array, shape: tuple[int, int], exponents: jax.Array) -> jax.Array:
    """Gaussian noise (B, T) whose power spectral density falls as 1/f**exponents (B,): 0 white, 1 pink, 2 brown."""
    spectrum = jnp.fft.rfft(jax.random.normal(key, shape), axis=-1)
    k = jnp.arange(shape[1] // 2 + 1, dtype=jnp.float32)
    gain = jnp.where(k > 0, jnp.maximum(k, 1.0) ** (-exponents[:, None] / 2), 0.0)  # no DC
    return jnp.fft.irfft(spectrum * gain, n=shape[1], axis=-1)


def bank_segments(key: jax.Array, bank: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """(B, T) noise: for each row, a random segment of the bank (N, L) read from a random offset, wrapping around."""
    rows_key, start_key = jax.random.split(key)
    rows = jax.random.randint(rows_key, (shape[0],), 0, bank.shape[0])
    start = jax.random.randint(start_key, (shape[0],), 0, bank.shape[1])
    return bank[rows[:, None], (start[:, None] + jnp.arange(shape[1])) % bank.shape[1]]


def exponential_rir(key: jax.Array, length: int, rt60: jax.Array, drr_db: jax.Array) -> jax.Array:
    """(B, length) room impulse responses: a direct path of 1, then Gaussian noise decaying by 60 dB over rt60 (B,)
    seconds, scaled so that direct / reverberant energy is drr_db (B,) dB."""
    t = jnp.arange(1, length) / SAMPLE_RATE
    tail = jax.random.normal(key, (rt60.shape[0], length - 1)) * jnp.exp(-3 * math.log(10) * t / rt60[:, None])
    tail = tail * jnp.sqrt(10 ** (-drr_db / 10) / jnp.maximum(jnp.sum(tail * tail, axis=-1), 1e-30))[:, None]
    return jnp.concatenate([jnp.ones((rt60.shape[0], 1), tail.dtype), tail], axis=-1)


def convolve(x: jax.Array, rir: jax.Array, mask: jax.Array) -> jax.Array:
    """Each row convolved with its impulse response (B, K) (FFT), cut to its valid samples, at its dry power."""
    m = mask.astype(x.dtype)
    n = 1 << (x.shape[1] + rir.shape[1] - 2).bit_length()  # >= T + K - 1: no wrap-around into the first T
    wet = jnp.fft.irfft(jnp.fft.rfft(x * m, n) * jnp.fft.rfft(rir.astype(x.dtype), n), n)[:, :x.shape[1]] * m
    level = jnp.sqrt(valid_power(x, mask) / jnp.maximum(valid_power(wet, mask), _tiny(x)))
    return (wet * level[:, None]).astype(x.dtype)


def change_speed(x: jax.Array, mask: jax.Array, factor: jax.Array, max_factor: float) -> tuple[jax.Array, jax.Array]:
    """Each row played factor (B,) times as fast (Kaldi's speed perturbation: tempo and pitch), resampled with a
    Hann-windowed sinc, low-passed when faster; its valid length becomes floor(n / factor), cut to the batch's T.
    (x, mask) with the padding zero; a row of factor 1 is returned as it is. max_factor (static) sizes the kernel."""
    batch, width = x.shape
    n = jnp.sum(mask, axis=-1)
    half = math.ceil(SINC_ZERO_CROSSINGS * max(1.0, max_factor))
    position = jnp.arange(width, dtype=jnp.float32)[None, :] * factor[:, None].astype(jnp.float32)
    index = jnp.floor(position).astype(jnp.int32)[..., None] + jnp.arange(1 - half, half + 1)  # (B, T, 2 half)
    distance = position[..., None] - index
    cutoff = jnp.minimum(1.0, 1.0 / factor)[:, None, None]
    window = jnp.where(jnp.abs(distance) < half, 0.5 + 0.5 * jnp.cos(jnp.pi * distance / half), 0.0)
    kernel = (cutoff * jnp.sinc(cutoff * distance) * window).astype(x.dtype)
    inside = (index >= 0) & (index < n[:, None, None])
    taps = jnp.take_along_axis(x, jnp.clip(index, 0, width - 1).reshape(batch, -1), axis=1).reshape(index.shape)
    y = jnp.sum(jnp.where(inside, taps, 0) * kernel, axis=-1)
    new_mask = (jnp.arange(width)[None, :] < jnp.floor(n / factor)[:, None]).astype(mask.dtype)
    same = (factor == 1)[:, None]
    return (jnp.where(same, x * mask.astype(x.dtype), y * new_mask.astype(x.dtype)),
            jnp.where(same, mask, new_mask))


def apply_gain(x: jax.Array, mask: jax.Array, gain_db: jax.Array) -> jax.Array:
    """Each row scaled by gain_db (B,) dB; the padding stays zero."""
    return x * (10 ** (gain_db / 20)).astype(x.dtype)[:, None] * mask.astype(x.dtype)


def clip_below_peak(x: jax.Array, mask: jax.Array, db: jax.Array) -> jax.Array:
    """Each row hard-clipped at db (B,) dB (<= 0) relative to its own peak over the valid samples; padding zero."""
    peak = jnp.max(jnp.abs(x) * mask.astype(x.dtype), axis=-1)
    limit = (peak * 10 ** (db / 20)).astype(x.dtype)[:, None]
    return jnp.clip(x, -limit, limit) * mask.astype(x.dtype)


def normalize_valid(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Each row at zero mean and unit variance over its valid samples, (x - mean) / sqrt(var + 1e-7) as the feature
    extractor (data.loading.batching.normalize) computes them; padding zero."""
    m = mask.astype(x.dtype)
    n = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1)
    mean = jnp.sum(x * m, axis=-1, keepdims=True) / n
    var = jnp.sum(jnp.square(x - mean) * m, axis=-1, keepdims=True) / n
    return (x - mean) / jnp.sqrt(var + 1e-7) * m
