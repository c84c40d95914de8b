"""Dimensional labels of a corpus: arousal, valence and dominance read on the corpus's own scale and stored on
[0, 1] (the scale is recorded in the prepared corpus's metadata). rating_rule() is part of every corpus's version
(builders.corpus_version), so data prepared under other rules is refused."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from exhubert_jax.data.errors import ManifestError
from exhubert_jax.data.sources.labels import CLASSES

DIMENSIONS = ("arousal", "valence", "dominance")
# (low, high) of each corpus's published rating scale; manifests give [0, 1] unless they say otherwise
SCALES = {"iemocap": (1.0, 5.0), "msp-podcast": (1.0, 7.0), "manifest": (0.0, 1.0)}

Dims = tuple  # (arousal, valence, dominance), each a float on [0, 1] or None when unknown


def normalise(values: Mapping[str, float | None], scale: tuple[float, float], where: str, line: int | None) -> Dims:
    """(arousal, valence, dominance) mapped from `scale` onto [0, 1]; a value off the scale is a ManifestError."""
    lo, hi = scale
    out = []
    for name in DIMENSIONS:
        v = values.get(name)
        if v is None:
            out.append(None)
            continue
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ManifestError(where, line, f"{name} {v} is outside the scale {lo:g}-{hi:g}")
        out.append((v - lo) / (hi - lo))
    return tuple(out)


def parse_value(text: str | float | None, name: str, where: str, line: int | None) -> float | None:
    """A rating from a label file ('' or None: unknown)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ManifestError(where, line, f"{name} {text!r} is not a number") from None


def scale_record(scale: tuple[float, float], n_with: int) -> dict:
    """What the metadata records about a corpus's dimensional labels."""
    return {"names": list(DIMENSIONS), "scale": list(scale), "stored_as": [0.0, 1.0], "n_labelled": n_with}


# Onto the 6 classes (labels.CLASSES): arousal (on [0, 1]) at or above AROUSAL_HIGH is high; valence below
# VALENCE_BOUNDS[0] is negative, at or above VALENCE_BOUNDS[1] positive, neutral between (the middle third of the
# scale: 2.33-3.67 on IEMOCAP's 1-5, 3-5 on MSP-Podcast's 1-7).
AROUSAL_HIGH = 0.5
VALENCE_BOUNDS = (1 / 3, 2 / 3)
RATING_RULE_VERSION = 1  # bump when a change to the functions here changes a stored rating or a rating's class


def rating_rule() -> dict:
    """What decides stored ratings and their classes: the rules' version, the scales and the class thresholds."""
    return {"version": RATING_RULE_VERSION, "dimensions": list(DIMENSIONS), "scales": {k: list(v) for k, v in SCALES.items()},
            "arousal_high": AROUSAL_HIGH, "valence_bounds": list(VALENCE_BOUNDS)}


def classes_from_dims(arousal, valence) -> np.ndarray:
    """Index into the 6 classes (low/high x negative/neutral/positive) for [0, 1] arousal and valence."""
    a, v = np.asarray(arousal, np.float64), np.asarray(valence, np.float64)
    return (3 * (a >= AROUSAL_HIGH) + (v >= VALENCE_BOUNDS[0]) + (v >= VALENCE_BOUNDS[1])).astype(np.int64)


def class_of(dims: Dims | None) -> str | None:
    """The class name of (arousal, valence, dominance) on [0, 1], or None without both arousal and valence."""
    if dims is None or dims[0] is None or dims[1] is None:
        return None
    return CLASSES[int(classes_from_dims(dims[0], dims[1]))]
