"""The augmentation kinds (noise, reverb, speed, gain), their options, and their 'kind:key=value,...' spec strings,
in the syntax of adapter specs (exhubert_jax.model.config.split_spec).

A kind's `apply(key, x, mask, options, bank)` draws everything it needs from `key`, one draw per row, and returns
(x, mask); `bank` is the device array of the user's recordings it reads (`Kind.bank`), or None to generate them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import ConfigError, split_spec
from exhubert_jax.data import waveforms as wave

NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
RANGE = re.compile(rf"^({NUMBER})(?:-({NUMBER}))?$")


class AugmentError(ExhubertError, ValueError):
    """An augmentation spec, or a noise or impulse-response folder, that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a kind: its value ('range' LO-HI, 'probability', 'factors' or 'colours' joined by '+'), its
    default, and whether its numbers must be positive."""

    kind: str
    default: Any
    positive: bool = False


@dataclasses.dataclass(frozen=True)
class Kind:
    """One augmentation kind: its options, apply(key, x, mask, options, bank) -> (x, mask), and the bank it reads."""

    name: str
    options: dict[str, Option]
    apply: Callable
    bank: str | None = None


def _text(value: float) -> str:
    """A number as a spec writes it (5, 0.5, 1e-05)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _convert(option: Option, text: str) -> Any:
    """A checked option value from its spec text; None when the text is not one."""
    if option.kind == "colours":
        names = text.split("+")
        return tuple(c for c in wave.COLOURS if c in names) if names and set(names) <= set(wave.COLOURS) else None
    if option.kind == "factors":
        numbers = [float(t) for t in text.split("+") if re.fullmatch(NUMBER, t)]
        ok = len(numbers) == len(text.split("+")) and all(math.isfinite(v) and v > 0 for v in numbers)
        return tuple(dict.fromkeys(numbers)) if ok else None
    match = RANGE.match(text)
    if match is None:
        return None
    lo, hi = float(match[1]), float(match[2] if match[2] is not None else match[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) or (option.positive and lo <= 0):
        return None
    if option.kind == "probability":
        return lo if match[2] is None and 0 <= lo <= 1 else None
    return lo, hi


EXPECTED = {"range": "a number or a range LO-HI (LO <= HI)", "probability": "a probability from 0 to 1",
            "factors": "positive numbers joined by '+'",
            "colours": f"colours joined by '+' among {', '.join(wave.COLOURS)}"}


def _format(option: Option, value: Any) -> str:
    """An option value as its canonical spec text."""
    if option.kind == "colours":
        return "+".join(value)
    if option.kind == "factors":
        return "+".join(map(_text, value))
    return _text(value) if option.kind == "probability" else f"{_text(value[0])}-{_text(value[1])}"


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
                   "colours": Option("colours", tuple(wave.COLOURS))}, _noise, bank="noise"),
    Kind("reverb", {"rt60": Option("range", (0.2, 0.8), positive=True), "drr": Option("range", (-5.0, 10.0)),
                    "p": Option("probability", 0.5)}, _reverb, bank="rir"),
    Kind("speed", {"factors": Option("factors", (0.9, 1.0, 1.1)), "p": Option("probability", 1.0)}, _speed),
    Kind("gain", {"db": Option("range", (-6.0, 6.0)), "p": Option("probability", 1.0)}, _gain),
)}


# ---------------------------------------------------------------------------------------------------- spec strings


def parse(text: str) -> tuple[str, dict[str, Any]]:
    """'noise:snr=5-20,p=0.5' -> ('noise', {'snr': (5.0, 20.0), 'p': 0.5, 'colours': (...)}), defaults filled in;
    an AugmentError names the spec and the problem."""
    try:
        name, given = split_spec(text, what="augmentation spec", name="kind")
    except ConfigError as e:
        raise AugmentError(str(e)) from None
    where = f"augmentation spec {text!r}"
    if name not in KINDS:
        raise AugmentError(f"{where}: unknown kind {name!r}; choose one of {', '.join(KINDS)}")
    schema = KINDS[name].options
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise AugmentError(f"{where}: {name} has no option(s) {', '.join(unknown)} (options: {', '.join(schema)})")
    options = {}
    for key, option in schema.items():
        value = _convert(option, given[key]) if key in given else option.default
        if value is None:
            positive = " of positive numbers" if option.positive else ""
            raise AugmentError(f"{where}: {key} must be {EXPECTED[option.kind]}{positive}, got {given[key]!r}")
        options[key] = value
    return name, options


def canonical(text: str) -> str:
    """The canonical form of a spec string: every option spelled out, in declaration order."""
    name, options = parse(text)
    return f"{name}:" + ",".join(f"{k}={_format(KINDS[name].options[k], v)}" for k, v in options.items())


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
