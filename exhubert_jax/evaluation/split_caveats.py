"""What a UAR on a degenerate split cannot say: a split of one class scores that class's recall alone (a model that
always answers it gets 100 %), and a class with fewer than MIN_PER_CLASS examples moves its recall, and so UAR, by
more than 1/MIN_PER_CLASS of its range with a single utterance. Such a split is scored, with its caveat beside the
score."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

MIN_PER_CLASS = 5  # below it, one utterance moves a class's recall by more than 20 points
MARK = "(!)"  # the mark beside a score that has a caveat; the caveat itself follows the table


def class_counts(targets: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    """Examples per class present among `targets` (class indices; negative ones are unlabelled and not counted)."""
    targets = np.asarray(targets)
    found = np.bincount(targets[targets >= 0], minlength=len(names))
    return {(names[i] if i < len(names) else str(i)): int(n) for i, n in enumerate(found) if n}


def split_caveat(counts: Mapping[str, int]) -> str | None:
    """The caveat of a split with these class counts: one class only, or classes with fewer than MIN_PER_CLASS
    examples; None when its UAR needs none (or it has no labelled example at all)."""
    present = {k: int(v) for k, v in counts.items() if v}
    if len(present) == 1:
        (name, n), = present.items()
        return (f"one class only ({name}: {n}): its UAR is that class's recall, 100 % for a model that always "
                "answers it")
    few = {k: v for k, v in present.items() if v < MIN_PER_CLASS}
    if not few:
        return None
    low, high = min(few.values()), max(few.values())
    which = (f"each of its {len(few)} classes ({low}{f'-{high}' if high > low else ''} each)" if few == present
             else ", ".join(f"{k}: {v}" for k, v in few.items()))
    return (f"fewer than {MIN_PER_CLASS} examples of {which}: one utterance moves a class's recall by up to "
            f"{100 / low:.0f} points")


def split_targets(split: Any, label_space: str) -> np.ndarray | None:
    """The class indices a prepared split is scored on in a label space ('emotion' or 'native'); None for a source
    that does not list them without reading its audio."""
    values = getattr(split, "labels" if label_space == "emotion" else "native_indices", None)
    return None if values is None else np.asarray(values)


def split_caveats(splits: Mapping[str, Any], label_space: str, names: Sequence[str]) -> dict[str, str]:
    """The caveat of each split (corpus -> split) that has one."""
    found = {}
    for corpus, split in splits.items():
        targets = split_targets(split, label_space)
        caveat = None if targets is None else split_caveat(class_counts(targets, names))
        if caveat:
            found[corpus] = caveat
    return found


def caveat_lines(caveats: Mapping[str, str | None], split: str) -> list[str]:
    """One `MARK corpus, split: caveat` line per corpus that has one (for under a table)."""
    return [f"{MARK} {name}, {split} split: {text}" for name, text in sorted(caveats.items()) if text]
