"""What a corpus's TFDS builder writes (builders.py asks it for its examples) and what metadata.json records
with it: the per-split statistics, the summary line, speaker independence and provenance."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.errors import AudioError, DataError
from exhubert_jax.data.prepare.splits import shared_speakers
from exhubert_jax.data.sources.corpora import MANIFEST, Corpus, base_name
from exhubert_jax.data.sources.dimensions import SCALES, scale_record
from exhubert_jax.data.sources.labels import CLASSES, LabelRule, LabelTable
from exhubert_jax.data.sources.readers import SPLITS, Utterance
from exhubert_jax.data.sources.soft_labels import class_distribution, native_distribution, soft_label_rule, sparse


@dataclass(frozen=True)
class Origin:
    """Where a prepared dataset came from: the folder utterance ids are relative to, the metadata that records the
    source, and the command that prepares it again."""

    base: Path
    command: str
    meta: dict[str, Any]


class Plan:
    """What a builder writes (see builders.py): the kept utterances with their rule and split, decoded in order;
    collects the skipped files and per-split statistics as it goes."""

    def __init__(self, name: str, items: Sequence[tuple[Utterance, LabelRule, str]], native: list[str], base: Path,
                 on_error: str, decode: Callable[[Sequence[str]], Iterable], bar: Any, log: Callable[[str], None],
                 n_dropped: int, extra: dict[str, Any], dists: Sequence[tuple] | None = None):
        self.name, self.items, self.native, self.base = name, items, native, base
        self.on_error, self.decode, self.bar, self.log = on_error, decode, bar, log
        self.n_dropped, self.extra = n_dropped, extra
        self._native_index = {label: i for i, label in enumerate(native)}
        self.skipped: list[dict[str, str]] = []
        self.has_dims = any(u.dims is not None for u, _, _ in items)  # arousal, valence, dominance on [0, 1]
        # (6-class, native) label distribution of each item (label_distributions), None where it has none
        self.dists = list(dists) if dists is not None else [(None, None)] * len(items)
        self.has_dist = any(d is not None for pair in self.dists for d in pair)
        self.index = {s: {"num_samples": [], "label": [], "native_index": [], "pcm_hash": [], "gender": [],
                          "language": [], "source_rate": [], **({"dims": []} if self.has_dims else {}),
                          **({"dist": [], "native_dist": []} if self.has_dist else {})}
                      for s in SPLITS}
        self.speakers: dict[str, list[str | None]] = {s: [] for s in SPLITS}
        self.error: DataError | None = None

    def counts(self) -> Counter:
        """Planned examples per split."""
        return Counter(s for _, _, s in self.items)

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(key, example) of one split, bad audio skipped (or stopping, per on_error)."""
        mine = [(k, u, rule) for k, (u, rule, s) in enumerate(self.items) if s == split]
        written = 0
        for (key, u, rule), (pcm, reason, rate) in zip(mine, self.decode([u.path for _, u, _ in mine])):
            self.bar.update()
            if pcm is None:
                if self.on_error == "stop":
                    self.error = AudioError(u.path, reason)
                    raise self.error
                self.skipped.append({"path": u.path, "reason": reason})
                self.log(f"skipped {u.path}: {reason}")
                continue
            native = self._native_index.get(u.native_label, -1)  # -1: no hard label (kept for its distribution)
            label = -1 if rule.index is None else rule.index
            for field, value in (("num_samples", int(pcm.shape[0])), ("label", label), ("native_index", native),
                                 ("pcm_hash", pcm_hash(pcm)), ("gender", u.gender), ("language", u.language),
                                 ("source_rate", rate)):
                self.index[split][field].append(value)
            if self.has_dims:
                self.index[split]["dims"].append(list(u.dims) if u.dims is not None else [None] * 3)
            dist, native_dist = self.dists[key]
            if self.has_dist:
                self.index[split]["dist"].append(sparse(dist))
                self.index[split]["native_dist"].append(sparse(native_dist))
            self.speakers[split].append(u.speaker)
            written += 1
            yield key, {"audio": pcm, "label": label, "native_label": native, "speaker": u.speaker or "",
                        "utterance_id": os.path.relpath(u.path, self.base), "duration": pcm.shape[0] / SAMPLE_RATE,
                        "label_dist": dense(dist, len(CLASSES)),
                        "native_label_dist": dense(native_dist, len(self.native))}
        if not written:
            self.error = DataError(f"{self.name}: no usable audio in split {split} ({len(mine)} files skipped, e.g. "
                                   f"{self.skipped[-1]['path']}: {self.skipped[-1]['reason']})")
            raise self.error

    def estimated_bytes(self) -> int | None:
        """About the bytes of every planned example's 16-bit audio, extrapolated from those decoded so far (None
        before the first)."""
        lengths = [n for ix in self.index.values() for n in ix["num_samples"]]
        return 2 * sum(lengths) * len(self.items) // len(lengths) if lengths else None

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-split statistics of what was written."""
        out = {}
        for s, ix in self.index.items():
            counts, speakers = Counter(ix["label"]), sorted({sp for sp in self.speakers[s] if sp is not None})
            out[s] = {"n": len(ix["label"]), "n_speakers": len(speakers), "speakers": speakers,
                      "classes": {c: counts.get(i, 0) for i, c in enumerate(CLASSES)},
                      "native": dict(sorted(Counter(self.native[i] for i in ix["native_index"] if i >= 0).items())),
                      "seconds": round(float(np.sum(ix["num_samples"], dtype=np.int64)) / SAMPLE_RATE, 3)}
            if self.has_dist:  # examples with a label distribution, and those with no hard label (no majority)
                out[s].update(n_label_dist=sum(d is not None for d in ix["dist"]), n_no_majority=counts.get(-1, 0))
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON line printed last, with every skipped file and its reason; speaker counts and speaker independence
        are None when speakers are unknown."""
        splits = self.stats()
        independent = self.extra["speaker_independent"]
        known = independent is not None
        per_split = {k: {"n": s["n"], "speakers": s["n_speakers"] if known else None, "classes": s["classes"]}
                     for k, s in splits.items()}
        return {"corpus": self.name, "n_examples": sum(s["n"] for s in splits.values()),
                "n_skipped": len(self.skipped), "skipped": [dict(s) for s in self.skipped], "n_dropped": self.n_dropped,
                "split_method": self.extra["split_method"], "speaker_independent": independent,
                "test_speakers_disjoint": self.extra["test_speakers_disjoint"],
                **{k: self.extra[k] for k in ("fold", "validation") if k in self.extra}, "splits": per_split}

    def report(self) -> dict[str, Any]:
        """The metadata stored with the dataset (metadata.json): the prepare options, what was written, skipped
        and dropped, and the per-example lengths and labels (so batching needs no pass over the audio)."""
        return {**self.extra, "skipped": self.skipped, "splits": self.stats(), "summary": self.summary(),
                "index": {s: ix for s, ix in self.index.items() if ix["label"]}}


def pcm_hash(pcm: np.ndarray) -> str:
    """The decoded 16 kHz int16 PCM's digest (16 hex digits of BLAKE2b): equal for byte-identical audio, whatever file
    or format it was decoded from (exact duplicates: data.audit)."""
    return hashlib.blake2b(np.ascontiguousarray(pcm, "<i2").tobytes(), digest_size=8).hexdigest()


def dense(dist: tuple | None, n: int) -> np.ndarray:
    """A distribution as a record stores it: float32 (n,), all zeros when there is none."""
    return np.zeros(n, np.float32) if dist is None else np.asarray(dist, np.float32)


def label_distributions(table: LabelTable, corpus: str, items: Sequence[tuple[Utterance, LabelRule, str]],
                        native: Sequence[str]) -> list[tuple]:
    """(6-class, native) label distribution of each item through the table (soft_labels.py; None where it has no
    votes or none maps to a class)."""
    return [(class_distribution(table, corpus, u.votes, u.origin or u.path),
             native_distribution(table, corpus, u.votes, native, u.origin or u.path)) for u, _, _ in items]


def speaker_report(items: Sequence[tuple[Utterance, LabelRule, str]]) -> dict[str, Any]:
    """Speaker independence over the utterances whose speaker is known: speakers in more than one split, and
    whether the test speakers are disjoint from the train and validation speakers (None: no speaker known)."""
    known = [(u, s) for u, _, s in items if u.speaker is not None]
    shared = shared_speakers([u for u, _ in known], [s for _, s in known])
    test = {u.speaker for u, s in known if s == "test"}
    rest = {u.speaker for u, s in known if s != "test"}
    return {"speaker_independent": (not shared) if known else None, "shared_speakers": shared,
            "test_speakers_disjoint": not (test & rest) if known else None,
            "speakers_known": f"{len(known)} of {len(items)}"}


def dimension_record(reader: str, items: Sequence[tuple[Utterance, LabelRule, str]]) -> dict[str, Any] | None:
    """The corpus's dimensional labels in metadata.json: names, the rating scale its reader read, how many
    utterances have them (None when none has)."""
    n_with = sum(u.dims is not None for u, _, _ in items)
    if not n_with:
        return None
    return scale_record(SCALES.get(reader, SCALES[MANIFEST]), n_with)


def distribution_record(items: Sequence[tuple[Utterance, LabelRule, str]]) -> dict[str, Any] | None:
    """The corpus's label distributions in metadata.json: how many utterances have votes, how many of them were
    kept without a majority label, the mapping rule (None when none has votes)."""
    n_with = sum(u.votes is not None for u, _, _ in items)
    if not n_with:
        return None
    return {"n_with_votes": n_with, "n_no_majority": sum(r.index is None for _, r, _ in items),
            "rule": soft_label_rule()}


def metadata(entry: Corpus, version: str, method: str, seed: int, table: LabelTable,
             items: Sequence[tuple[Utterance, LabelRule, str]], used: dict[str, LabelRule], dropped: Counter,
             origin: Origin, speakers: dict[str, Any]) -> dict[str, Any]:
    """The options and provenance stored in metadata.json."""
    from exhubert_jax.data.prepare.builders import tfds_name

    section = base_name(entry.name)
    return {
        "corpus": entry.name, "base_corpus": section, "reader": entry.reader, "tfds_name": tfds_name(entry.name),
        "version": version, "title": entry.title, "synthetic": entry.synthetic, "sample_rate": SAMPLE_RATE,
        "source": None, "manifest": None, **origin.meta, "split_method": method, "seed": seed,
        "label_table": table.fingerprint(section), "label_section": table.section(section),
        "native_labels": sorted({u.native_label for u, r, _ in items if r.index is not None}),
        "dimensions": dimension_record(MANIFEST if origin.meta.get("manifest") else entry.reader, items),
        "label_distributions": distribution_record(items),
        "label_map": {r.label: {"class": r.target, "meaning": r.meaning, "section": r.corpus}
                      for _, r in sorted(used.items())},
        **speakers, "dropped": dict(sorted(dropped.items())), "command": origin.command,
    }
