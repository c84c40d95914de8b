"""Waveform augmentation of training batches inside the jitted step: additive noise at a drawn SNR, reverberation,
speed perturbation and gain (`--augment KIND[:key=value,...]`), all drawn from the step's key, so a resumed run is
bit-identical; never applied in validation or evaluation (docs/training.md#augmentation)."""

from __future__ import annotations

from exhubert_jax.training.augmentation.kinds import (
    KINDS,
    AugmentError,
    canonical,
    checked_specs,
    parse,
    parse_all,
)
from exhubert_jax.training.augmentation.pipeline import (
    Augmentation,
    AugmentOptions,
    augment,
    augmentation_for,
)

__all__ = ["KINDS", "AugmentError", "AugmentOptions", "Augmentation", "augment", "augmentation_for", "canonical",
           "checked_specs", "parse", "parse_all"]
