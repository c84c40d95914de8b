"""Augmentation of training batches inside the jitted step: the options (--augment, --noise-dir, --rir-dir), the
pipeline of kinds in the order given, and its banks (device arrays of fixed shape, passed to the step as an
argument, so a run compiles as often as without augmentation and no recording is baked into the program)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.loading.devices import replicated
from exhubert_jax.data.audio import INFERENCE_EXTS
from exhubert_jax.process.options import Check, option
from exhubert_jax.data import banks as bank_files
from exhubert_jax.training.augmentation.kinds import (
    KINDS,
    AugmentError,
    checked_specs,
    parse_all,
    valid,
)
from exhubert_jax.training.step import TRAINING_STAGES

HOLDS_AUDIO = Check(bank_files.holds_audio, f"must be a folder holding audio files ({', '.join(INFERENCE_EXTS)})")


@dataclasses.dataclass
class AugmentOptions:
    """The augmentation options, declared once; TrainOptions inherits them (flags, checks, run.json keys; a resume
    with other values is refused)."""

    augment: tuple[str, ...] | None = option(
        None, action="append", metavar="KIND[:key=value,...]", stages=TRAINING_STAGES, parse=checked_specs,
        check=Check(valid, f"must be specs KIND[:key=value,...] of the kinds {', '.join(KINDS)}, each kind once"),
        help="augment training batches inside the step (never validation): noise:snr=5-20,p=0.5, "
             "reverb:rt60=0.2-0.8,drr=-5-10,p=0.5, speed:factors=0.9+1.0+1.1,p=1, gain:db=-6-6,p=1 (the defaults; "
             "repeat to chain, in order)")
    noise_dir: str | None = option(None, metavar="DIR", stages=TRAINING_STAGES, check=HOLDS_AUDIO,
                                   help="--augment noise: your noise recordings (any format and rate) instead of "
                                        "generated white, pink and brown noise")
    rir_dir: str | None = option(None, metavar="DIR", stages=TRAINING_STAGES, check=HOLDS_AUDIO,
                                 help="--augment reverb: room impulse responses (audio files) instead of generated "
                                      "exponential decays")

    def check_augmentation(self) -> None:
        """An AugmentError for a folder given without its kind, or one that is missing or holds no audio."""
        kinds = {name for name, _ in parse_all(self.augment or ())}
        for flag, directory, kind in (("--noise-dir", self.noise_dir, "noise"), ("--rir-dir", self.rir_dir, "reverb")):
            if directory is None:
                continue
            if kind not in kinds:
                raise AugmentError(f"{flag} {directory} does nothing without --augment {kind}")
            bank_files.audio_files_of(directory, flag)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The kinds to apply, in order, with their options, and the banks they read (device arrays by bank name)."""

    kinds: tuple[tuple[str, dict], ...]
    banks: dict[str, jax.Array]

    def apply(self, banks: dict[str, jax.Array] | None, x: jax.Array, mask: jax.Array,
              key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(x, mask) augmented: kind i draws from fold_in(key, i); `banks` is the step's argument (self.banks)."""
        for i, (name, options) in enumerate(self.kinds):
            kind = KINDS[name]
            x, mask = kind.apply(jax.random.fold_in(key, i), x, mask, options, (banks or {}).get(kind.bank))
        return x, mask


def augment(specs: tuple[str, ...], x: jax.Array, mask: jax.Array, key: jax.Array,
            banks: dict[str, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
    """A waveform batch and its mask augmented by the spec strings, in order (a pure function of its arguments)."""
    return Augmentation(parse_all(specs), {}).apply(banks, x, mask, key)


def augmentation_for(opts: Any, mesh: Mesh | None = None, say: Any = None) -> Augmentation | None:
    """The run's augmentation (None without --augment): banks decoded from --noise-dir and --rir-dir once, noise cut
    into segments of the crop length, in an order drawn from the run's seed, replicated over the mesh."""
    if not opts.augment:
        return None
    opts.check_augmentation()
    kinds, arrays = parse_all(opts.augment), {}
    if opts.noise_dir is not None:
        arrays["noise"] = bank_files.noise_bank(opts.noise_dir, round(opts.max_seconds * SAMPLE_RATE), opts.seed)
    if opts.rir_dir is not None:
        arrays["rir"] = bank_files.rir_bank(opts.rir_dir, opts.seed)
    if say is not None:
        held = {"noise": "noise segments", "rir": "impulse responses"}
        say("augmentation: " + ", ".join(opts.augment) + "".join(
            f"; {len(a)} {held[name]} of {a.shape[1] / SAMPLE_RATE:g} s" for name, a in arrays.items()))
    place = replicated(mesh) if mesh is not None else None
    return Augmentation(kinds, {k: jax.device_put(jnp.asarray(v), place) for k, v in arrays.items()})
