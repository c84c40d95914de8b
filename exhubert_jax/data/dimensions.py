"""Dimensional labels of a corpus: arousal, valence and dominance read on the corpus's own scale and stored on
[0, 1] (the scale is recorded in the prepared corpus's metadata). This module's source is part of every corpus's
version digest (builders.corpus_version), so data prepared under other rules is refused."""

from __future__ import annotations

import math
from typing import Mapping

from .errors import ManifestError

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
