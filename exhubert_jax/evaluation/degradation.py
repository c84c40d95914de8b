"""Controlled degradations of the test audio (evaluate.py --degrade): the conditions and their 'kind:key=value,...'
specs (the syntax of --augment, model.spec_options), and the jitted forward that degrades a padded batch on the
device, normalises it as the feature extractor does and runs the model.

Noise, reverberation and clipping run on the device, inside the forward (data.waveforms); codecs and the telephone
band run on the host (data.codecs), one utterance at a time. Every draw of an utterance comes from the condition's
key folded with the utterance's index in its split, so it never depends on the batch it is in."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from exhubert_jax.data import waveforms as wave
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.codecs import CODECS, MP3_KBPS
from exhubert_jax.data.loading.devices import replicated
from exhubert_jax.data.prepare.splits import derive_seed
from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation.predict import Predictor
from exhubert_jax.model.spec_options import Option, parse_spec, spec_text

MAX_RT60 = 3.0  # seconds: generated impulse responses are this long, so every RT60 compiles one program
OPUS_KBPS = (6.0, 256.0)
CODEC_DEFAULTS = {"mp3": {"kbps": 32.0}, "opus": {"kbps": 16.0}, "vorbis": {"quality": 0.5}, "gsm": {}}

SCHEMAS: dict[str, dict[str, Option]] = {
    "clean": {},
    "noise": {"snr": Option("number", 10.0), "colour": Option("choice", "white", choices=tuple(wave.COLOURS))},
    "reverb": {"rt60": Option("number", 0.5, positive=True, bounds=(0.0, MAX_RT60)), "drr": Option("number", 0.0)},
    "codec": {"name": Option("choice", "mp3", choices=tuple(CODECS)), "kbps": Option("number", None, positive=True),
              "quality": Option("number", None, bounds=(0.0, 1.0))},
    "telephone": {},
    "clip": {"db": Option("number", -6.0, bounds=(-60.0, 0.0))},
}
HOST_KINDS = ("codec", "telephone")
STRENGTHS = {"noise": ("snr", "SNR (dB)"), "reverb": ("rt60", "RT60 (s)"), "clip": ("db", "clipping level (dB re peak)")}
BANKS = {"noise": "noise", "reverb": "rir"}  # the kind that reads each bank (--noise-dir, --rir-dir)


class DegradeError(ExhubertError, ValueError):
    """A --degrade spec, or a noise or impulse-response folder for it, that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """One degradation condition: its canonical spec, kind and options (defaults filled in)."""

    spec: str
    kind: str
    options: dict[str, Any]

    @property
    def host(self) -> bool:
        """Whether it runs on the host (codecs, telephone) rather than inside the jitted forward."""
        return self.kind in HOST_KINDS

    @property
    def strength(self) -> float | None:
        """The number the plot puts it at (SNR, RT60, clipping dB); None for a kind without one."""
        key = STRENGTHS.get(self.kind, (None,))[0]
        return None if key is None else float(self.options[key])


CLEAN = Condition("clean", "clean", {})


def _codec_options(name: str, options: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A codec's options with its defaults filled in, and why they cannot work (None when they can)."""
    given = {k: v for k, v in options.items() if k != "name" and v is not None}
    allowed = set(CODEC_DEFAULTS[name])
    extra = sorted(set(given) - allowed)
    if extra:
        return options, (f"{name} takes no {', '.join(extra)} (" + (f"only {', '.join(sorted(allowed))}" if allowed
                                                                    else "it has a fixed bitrate") + ")")
    filled = {"name": name, **{k: None for k in ("kbps", "quality")}, **CODEC_DEFAULTS[name], **given}
    kbps = filled["kbps"]
    if name == "mp3" and kbps not in MP3_KBPS:
        return filled, f"mp3 kbps must be one of {', '.join(map(str, MP3_KBPS))} (MPEG-2 Layer III at 16 kHz)"
    if name == "opus" and not OPUS_KBPS[0] <= kbps <= OPUS_KBPS[1]:
        return filled, f"opus kbps must be from {OPUS_KBPS[0]:g} to {OPUS_KBPS[1]:g}"
    return filled, None


def parse_condition(text: str, flag: str = "--degrade") -> Condition:
    """A --degrade spec as a Condition; a DegradeError naming the flag, the spec and the problem."""
    try:
        kind, options = parse_spec(text, SCHEMAS, "degradation spec", DegradeError)
    except DegradeError as e:
        raise DegradeError(f"{flag} {text}: {str(e).removeprefix(f'degradation spec {text!r}: ')}") from None
    if kind == "codec":
        options, why = _codec_options(options["name"], options)
        if why:
            raise DegradeError(f"{flag} {text}: {why}")
    return Condition(spec_text(kind, options, SCHEMAS[kind]), kind, options)


def conditions(texts: Iterable[str], noise_dir: str | None = None, rir_dir: str | None = None) -> tuple[Condition, ...]:
    """clean first, then each spec's condition once, in the order given; a DegradeError for a bad spec or for a
    --noise-dir / --rir-dir without a condition that reads it."""
    parsed = [CLEAN] + [parse_condition(t) for t in texts]
    kinds = {c.kind for c in parsed}
    for flag, directory, kind in (("--noise-dir", noise_dir, "noise"), ("--rir-dir", rir_dir, "reverb")):
        if directory is not None and kind not in kinds:
            raise DegradeError(f"{flag} {directory} does nothing without --degrade {kind}:...")
    return tuple({c.spec: c for c in parsed}.values())


def checked_specs(texts: Iterable[str]) -> tuple[str, ...]:
    """--degrade's specs in canonical form (the option's parse: refused as the flag is read)."""
    return tuple(c.spec for c in conditions(texts)[1:])


def condition_key(seed: int, corpus: str, condition: Condition) -> np.ndarray:
    """The raw key (uint32 (2,)) of a condition's draws on a corpus: from --seed, the corpus and the spec alone."""
    return np.asarray(jax.random.key_data(jax.random.PRNGKey(derive_seed(seed, corpus, condition.spec) % 2 ** 31)))


def strengths(condition: Condition) -> dict[str, np.ndarray]:
    """The condition's numbers as float32 scalars (passed to the forward as arrays: no recompiling per strength)."""
    o = condition.options
    values = {"snr": o.get("snr", 0.0), "exponent": wave.COLOURS.get(o.get("colour", "white"), 0.0),
              "rt60": o.get("rt60", 1.0), "drr": o.get("drr", 0.0), "db": o.get("db", 0.0)}
    return {k: np.float32(v) for k, v in values.items()}


def device_kind(condition: Condition) -> str:
    """What the forward does before the model: 'none' (clean, or audio the host already degraded and normalised),
    else the condition's kind."""
    return "none" if condition.kind == "clean" or condition.host else condition.kind


def corrupt(kind: str, x: jax.Array, mask: jax.Array, keys: jax.Array, s: dict[str, jax.Array],
            bank: jax.Array | None, width: int) -> jax.Array:
    """A padded batch (B, T) degraded by a device kind (noise, reverb, clip), with each row's key (B, 2) and the
    strengths `s`; padding zero. Generated noise is drawn `width` samples long (static: the split's widest batch)
    and cut to T, so a row's noise does not depend on the width of its batch."""
    rows, length = x.shape
    if kind == "noise":
        if bank is None:
            noise = jax.vmap(lambda k: wave.coloured_noise(k, (1, width), s["exponent"][None])[0, :length])(keys)
        else:
            noise = jax.vmap(lambda k: wave.bank_segments(k, bank, (1, length))[0])(keys)
        return wave.mix_at_snr(x, noise, mask, jnp.full((rows,), s["snr"], x.dtype))
    if kind == "reverb":
        if bank is None:
            taps = math.ceil(MAX_RT60 * SAMPLE_RATE)
            rir = jax.vmap(lambda k: wave.exponential_rir(k, taps, s["rt60"][None], s["drr"][None])[0])(keys)
        else:
            rir = bank[jax.vmap(lambda k: jax.random.randint(k, (), 0, bank.shape[0]))(keys)]
        return wave.convolve(x, rir, mask)
    if kind == "clip":
        return wave.clip_below_peak(x, mask, jnp.full((rows,), s["db"], x.dtype))
    raise ValueError(f"unknown device degradation {kind!r}")


def degrade(kind: str, x: jax.Array, mask: jax.Array, keys: jax.Array, s: dict[str, jax.Array],
            bank: jax.Array | None, width: int) -> jax.Array:
    """What the model sees: the batch as it is for 'none', else corrupt()ed and normalised again over each row's
    valid samples (the model sees the degraded signal through the feature extractor)."""
    return x if kind == "none" else wave.normalize_valid(corrupt(kind, x, mask, keys, s, bank, width), mask)


def row_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
    """Each row's key (B, 2): the condition's raw key folded with the row's index in its split (padding rows: 0)."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.maximum(indices, 0).astype(jnp.uint32))


class DegradedPredictor(Predictor):
    """A Predictor whose forward first degrades the batch (degrade), compiled once per batch shape, device kind
    and bank presence; `compiled` lists (kind, shape) as XLA compiles them. One process only."""

    def __init__(self, model: Any, mesh: Mesh | None = None):
        super().__init__(model, mesh)
        if self.shard:
            raise DegradeError("--degrade runs in one process; start it without a multi-process mesh")
        self.compiled: list[tuple[str, tuple[int, ...]]] = []
        kwargs = {"out_shardings": replicated(mesh)} if mesh is not None else {}
        self._degraded = jax.jit(self._degraded_forward, static_argnames=("kind", "width"), **kwargs)

    def _degraded_forward(self, params, x, mask, indices, key, s, bank, *, kind: str, width: int):
        """Traced once per shape, kind and bank: row keys from the condition's key and the split indices."""
        self.compiled.append((kind, tuple(x.shape)))
        return self._forward(params, degrade(kind, x, mask, row_keys(key, indices), s, bank, width), mask)

    def degraded_outputs(self, params: Any, x: np.ndarray, mask: np.ndarray, indices: np.ndarray,
                         condition: Condition, key: np.ndarray, bank: jax.Array | None, width: int) -> np.ndarray:
        """float32 (B, num_labels + len(dimensions)) of the batch under the condition (x already degraded on the
        host for a host condition)."""
        device = self.placed(x, mask, indices=np.asarray(indices, np.int64))
        out = self._degraded(params, device["input_values"], device["attention_mask"], device["indices"],
                             jnp.asarray(key), strengths(condition), bank, kind=device_kind(condition), width=width)
        return self.real_rows(out, len(x))
