"""Exact duplicates: utterances whose decoded 16 kHz PCM is byte-identical (equal digests, prepare.plan.pcm_hash),
and train.py's cheap check of them from the prepared indexes alone (no audio is read)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from exhubert_jax.data.loading.dataset import prepared_names, read_record
from exhubert_jax.data.sources.corpora import base_name

HELD_OUT = ("validation", "test")
MAX_GROUP = 200  # a group of identical files larger than this is reported as pairs with its first member only


def exact_groups(digests: Iterable[tuple[Any, str]]) -> list[list[Any]]:
    """Groups (two or more) of the keys whose digests are equal, in the order given."""
    by_digest: dict[str, list[Any]] = defaultdict(list)
    for key, digest in digests:
        by_digest[digest].append(key)
    return [keys for keys in by_digest.values() if len(keys) > 1]


def group_pairs(group: Sequence[Any]) -> list[tuple[Any, Any]]:
    """The pairs of one group of identical files: all of them, or each with the first for a huge group."""
    if len(group) > MAX_GROUP:
        return [(group[0], k) for k in group[1:]]
    return [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]


def index_of(directory: Path) -> dict[str, Any] | None:
    """The per-example index of a prepared corpus folder (metadata.json's), read without opening the dataset; None
    when it cannot be read."""
    record = read_record(directory)
    try:
        meta = json.loads((directory / record["version"] / "metadata.json").read_text()) if record else None
    except (OSError, ValueError):
        return None
    return meta.get("index") if isinstance(meta, dict) and isinstance(meta.get("index"), dict) else None


def training_leaks(training: Mapping[str, dict[str, Any]], data_dir: str | Path) -> tuple[int, list[str]]:
    """(validation and test files of any corpus prepared under data_dir whose PCM is in the training split of one of
    `training` ({corpus: its index}), the corpora that could not be checked as they have no digests). Folds of one
    corpus are not compared with each other (they share their files by design)."""
    train: set[str] = set()
    unchecked: list[str] = []
    for name, index in training.items():
        digests = index.get("train", {}).get("pcm_hash")
        if digests is None:
            unchecked.append(name)
        else:
            train.update(digests)
    if not train:
        return 0, unchecked
    bases = {base_name(n): n for n in training}
    leaks = 0
    for name in prepared_names(data_dir):
        if name not in training and base_name(name) in bases:
            continue
        index = training.get(name) or index_of(Path(data_dir) / name)
        if index is None:
            continue
        held = [index.get(s, {}).get("pcm_hash") for s in HELD_OUT if s in index]
        if any(d is None for d in held):
            unchecked.append(name)
            continue
        leaks += sum(d in train for digests in held for d in digests)
    return leaks, sorted(set(unchecked))


def leak_warning(training: Mapping[str, dict[str, Any]], data_dir: str | Path) -> str | None:
    """train.py's one warning line about test or validation files in its training data (and the corpora that could
    not be checked), or None when there is nothing to say."""
    leaks, unchecked = training_leaks(training, data_dir)
    audit = f"python -m exhubert_jax.data.audit --data-dir {data_dir}"
    parts = []
    if leaks:
        parts.append(f"{leaks} validation or test file(s) of the corpora prepared in {data_dir} are also in this run's "
                     "training data (identical audio)")
    if unchecked:
        parts.append(f"{', '.join(unchecked)} not checked for that (prepared before PCM digests were recorded: "
                     "python -m exhubert_jax.data.prepare rebuilds them)")
    return f"warning: {'; '.join(parts)}; run `{audit}` to see which" if parts else None

