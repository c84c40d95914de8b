"""A corpus's utterances as read from its source (its reader, a manifest, or EmoNet's list files), each with the
label-table rule that maps it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from exhubert_jax.data.errors import DataError, MissingSourceError, UnknownCorpusError, UnknownLabelError
from exhubert_jax.data.sources.corpora import MANIFEST, Corpus, get_corpus, user_corpus
from exhubert_jax.data.sources.emonet import is_emonet_folder, read_emonet
from exhubert_jax.data.sources.labels import DROP, LabelRule, LabelTable
from exhubert_jax.data.sources.readers import READERS, Utterance, read_manifest


def is_emonet(source: str | Path | None, manifest: str | Path | None) -> bool:
    """True when the source folder is in EmoNet's layout (and no manifest overrides it)."""
    return manifest is None and source is not None and Path(source).is_dir() and is_emonet_folder(source)


def resolve_entry(corpus: str, source: str | Path | None, manifest: str | Path | None) -> Corpus:
    """Registry entry (or alias); with a manifest or an EmoNet-layout source, an unknown name becomes a user
    corpus."""
    try:
        return get_corpus(corpus)
    except UnknownCorpusError:
        if manifest is None and not is_emonet(source, manifest):
            raise
        return user_corpus(corpus)


def read_corpus(entry: Corpus, source: str | Path | None, manifest: str | Path | None) -> list[Utterance]:
    """The corpus's utterances through the given manifest, EmoNet's list files in source, or its reader."""
    if source is not None and not Path(source).is_dir():
        raise MissingSourceError(str(source), f"{entry.name} corpus folder")
    if manifest is not None:
        return read_manifest(manifest, source)
    if is_emonet(source, manifest):
        return read_emonet(source)
    if entry.reader == MANIFEST:
        raise DataError(f"{entry.name} is read through a manifest: pass --manifest FILE "
                        "(CSV or JSONL with columns path,label[,speaker][,split][,gender][,language]), or --source "
                        "DIR in EmoNet's layout (train.csv, devel.csv, test.csv with file,label)")
    if source is None:
        raise DataError(f"{entry.name}: pass --source DIR, the corpus folder as downloaded")
    return READERS[entry.reader](source)


def no_majority_rule(corpus: str, label: str) -> LabelRule:
    """The rule of an utterance whose annotators reached no majority label, kept for its label distribution alone:
    no class (its hard label is -1 where it is stored)."""
    return LabelRule(corpus, label, "no majority", DROP, "no majority label: kept for its label distribution only "
                     "(prepare --keep-no-majority), never trained or scored on a hard label")


def map_labels(table: LabelTable, name: str, utts: Sequence[Utterance], keep_no_majority: bool = False
               ) -> tuple[list[tuple[Utterance, LabelRule]], Counter, dict[str, LabelRule]]:
    """(kept utterances with their rule, dropped-label counts, table rows used by label); every unknown label of
    the corpus is reported in one UnknownLabelError, naming where the first one was read (list file and row, or
    audio file). An utterance without a majority label is dropped, or with keep_no_majority kept under
    no_majority_rule when it has votes."""
    kept, dropped, used, unknown = [], Counter(), {}, {}
    for u in utts:
        if not u.majority:
            if keep_no_majority and u.votes:
                kept.append((u, no_majority_rule(name, u.native_label)))
            else:
                dropped[u.native_label] += 1
            continue
        try:
            rule = table.lookup(name, u.native_label, u.origin or u.path)
        except UnknownLabelError as e:
            unknown.setdefault(u.native_label, [e, 0])[1] += 1
            continue
        used[rule.label] = rule
        if rule.index is None:
            dropped[u.native_label] += 1
        else:
            kept.append((u, rule))
    if unknown:
        (first, _), *rest = unknown.values()
        raise UnknownLabelError(name, first.path, first.label, table.known(name),
                                {e.label: n for e, n in rest})
    if not any(rule.index is not None for _, rule in kept):
        raise DataError(f"{name}: the label table drops every file ({dict(dropped)})")
    return kept, dropped, used


def read_mapped(entry: Corpus, source: str | Path | None, manifest: str | Path | None, table: LabelTable,
                keep_no_majority: bool = False
                ) -> tuple[list[tuple[Utterance, LabelRule]], Counter, dict[str, LabelRule]]:
    """The corpus's utterances with their label rules (see map_labels)."""
    return map_labels(table, entry.name, read_corpus(entry, source, manifest), keep_no_majority)
