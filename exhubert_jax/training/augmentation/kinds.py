"""The augmentation kinds (noise, reverb, speed, gain), their options, and their 'kind:key=value,...' spec strings,
in the syntax of adapter specs (exhubert_jax.model.config.split_spec).

A kind's `apply(key, x, mask, options, bank)` draws everything it needs from `key`, one draw per row, and returns
(x, mask); `bank` is the device array of the user's recordings it reads (`Kind.bank`), or None to generate them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from exhubert_jax.data import waveforms as wave
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.spec_options import Option, parse_spec, spec_text


class AugmentError(ExhubertError, ValueError):
    """An augmentation spec, or a noise or impulse-response folder, that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """One augmentation kind: its options, apply(key, x, mask, options, bank) -> (x, mask), and the bank it reads."""

    name: str
    options: dict[str, Option]
    apply: Callable
    bank: str | None = None


# --------------------------------------------------------------------------------------------------------- kinds


def _uniform(key: jax.Array, rows: int, bounds: tuple[float, float]) -> jax.Array:
    """One draw per row, uniform over [lo, hi]."""
    return jax.random.uniform(key, (rows,), minval=bounds[0], maxval=bounds[1])


def _chance(key: jax.Array, p: float, new: tuple, old: tuple) -> tuple:
    """Per row, the augmented (x, mask) with probability p, else the row as it was."""
    chosen = jax.random.uniform(key, (old[0].shape[0],)) < p
    return tuple(jnp.where(chosen[:, None], a, b) for a, b in zip(new, old))


def _noise(key: jax.Array, x: jax.Array, mask: jax.Array, o: dict, bank: jax.Array | None) -> tuple:
    """Additive noise (the bank's, else generated in a colour drawn per row) at an SNR drawn from o['snr']."""
    source_key, colour_key, snr_key, p_key = jax.random.split(key, 4)
    if bank is not None:
        source = wave.bank_segments(source_key, bank, x.shape)
    else:
        exponents = jnp.asarray([wave.COLOURS[c] for c in o["colours"]], jnp.float32)
        chosen = jax.random.randint(colour_key, (x.shape[0],), 0, len(o["colours"]))
        source = wave.coloured_noise(source_key, x.shape, exponents[chosen])
    noisy = wave.mix_at_snr(x, source, mask, _uniform(snr_key, x.shape[0], o["snr"]).astype(x.dtype))
    return _chance(p_key, o["p"], (noisy, mask), (x, mask))


def _reverb(key: jax.Array, x: jax.Array, mask: jax.Array, o: dict, bank: jax.Array | None) -> tuple:
    """Convolution with an impulse response: one of the bank's, else generated with RT60 and DRR drawn per row."""
    rir_key, rt60_key, drr_key, p_key = jax.random.split(key, 4)
    if bank is not None:
        rir = bank[jax.random.randint(rir_key, (x.shape[0],), 0, bank.shape[0])]
    else:
        length = math.ceil(o["rt60"][1] * SAMPLE_RATE)  # static: the longest decay to -60 dB
        rir = wave.exponential_rir(rir_key, length, _uniform(rt60_key, x.shape[0], o["rt60"]),
                                   _uniform(drr_key, x.shape[0], o["drr"]))
    return _chance(p_key, o["p"], (wave.convolve(x, rir, mask), mask), (x, mask))


def _speed(key: jax.Array, x: jax.Array, mask: jax.Array, o: dict, bank: jax.Array | None) -> tuple:
    """Speed perturbation by a factor drawn per row from o['factors']; the batch's length stays, the mask follows."""
    factor_key, p_key = jax.random.split(key)
    factors = jnp.asarray(o["factors"], jnp.float32)
    factor = factors[jax.random.randint(factor_key, (x.shape[0],), 0, len(o["factors"]))]
    return _chance(p_key, o["p"], wave.change_speed(x, mask, factor, max(o["factors"])), (x, mask))


def _gain(key: jax.Array, x: jax.Array, mask: jax.Array, o: dict, bank: jax.Array | None) -> tuple:
    """A gain in dB drawn per row from o['db']."""
    gain_key, p_key = jax.random.split(key)
    louder = wave.apply_gain(x, mask, _uniform(gain_key, x.shape[0], o["db"]).astype(x.dtype))
    return _chance(p_key, o["p"], (louder, mask), (x, mask))


KINDS = {k.name: k for k in (
    Kind("noise", {"snr": Option("range", (5.0, 20.0)), "p": Option("probability", 0.5),
                   "colours": Option("choices", tuple(wave.COLOURS), choices=tuple(wave.COLOURS))},
         _noise, bank="noise"),
    Kind("reverb", {"rt60": Option("range", (0.2, 0.8), positive=True), "drr": Option("range", (-5.0, 10.0)),
                    "p": Option("probability", 0.5)}, _reverb, bank="rir"),
    Kind("speed", {"factors": Option("factors", (0.9, 1.0, 1.1)), "p": Option("probability", 1.0)}, _speed),
    Kind("gain", {"db": Option("range", (-6.0, 6.0)), "p": Option("probability", 1.0)}, _gain),
)}


# ---------------------------------------------------------------------------------------------------- spec strings


def parse(text: str) -> tuple[str, dict[str, Any]]:
    """'noise:snr=5-20,p=0.5' -> ('noise', {'snr': (5.0, 20.0), 'p': 0.5, 'colours': (...)}), defaults filled in;
    an AugmentError names the spec and the problem."""
    return parse_spec(text, {k.name: k.options for k in KINDS.values()}, "augmentation spec", AugmentError)


def canonical(text: str) -> str:
    """The canonical form of a spec string: every option spelled out, in declaration order."""
    name, options = parse(text)
    return spec_text(name, options, KINDS[name].options)


def parse_all(texts: Iterable[str]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every spec parsed, in order; a kind given twice is an AugmentError."""
    parsed = tuple(parse(t) for t in texts)
    names = [name for name, _ in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AugmentError(f"augmentation kind(s) {', '.join(twice)} given more than once; give each kind once")
    return parsed


def checked_specs(texts: Iterable[str], flag: str = "--augment") -> tuple[str, ...]:
    """A command line's specs in canonical form, once each parses; the first that does not is an AugmentError
    naming the flag, the spec and the problem (refused as the flag is read, before anything is built)."""
    texts = list(texts)
    for text in texts:
        try:
            parse(text)
        except AugmentError as e:
            raise AugmentError(f"{flag} {text}: {str(e).removeprefix(f'augmentation spec {text!r}: ')}") from None
    try:
        parse_all(texts)
    except AugmentError as e:
        raise AugmentError(f"{flag}: {e}") from None
    return tuple(canonical(t) for t in texts)


def valid(texts: Iterable[str]) -> bool:
    """Whether the specs parse, each kind at most once (the check of the option set through the library)."""
    try:
        parse_all(texts)
    except AugmentError:
        return False
    return True
