"""TensorFlow Datasets builders for the corpora: one class per registry corpus, generated from the registry, and
one per user (manifest) corpus. Files are array_record and audio is an int16 `Tensor` at 16 kHz (TFDS's `Audio`
feature needs TensorFlow; a `Tensor` does not), so building and reading need no TensorFlow.

The examples themselves come from a *plan* (plan.py): an object with `native` (the corpus's labels),
`counts()` ({split: planned examples}), `examples(split)` (yields (key, example)) and `report()` (the metadata
written next to the data)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from exhubert_jax.data import audio
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.prepare import splits
from exhubert_jax.data.sources import readers
from exhubert_jax.data.sources.corpora import CORPORA, EMOBOX, MANIFEST, Corpus, base_name
from exhubert_jax.data.sources.labels import CLASSES, load_label_table
from exhubert_jax.data.sources.readers import READERS, SPLITS

SCHEMA = 2  # bump when the features below or the folder layout change
FILE_FORMAT = "array_record"

RELEASE_NOTES = {
    "2.*.*": "The features of 1.*.*, plus label_dist and native_label_dist: the annotators' label distribution over "
             "the 6 classes and over the corpus's own labels (all 0: none); label and native_label are -1 for an "
             "utterance kept for its distribution alone (prepare --keep-no-majority). Minor and patch numbers as "
             "in 1.*.*.",
    "1.*.*": "Features audio (int16, 16 kHz), label (6 classes), native_label, speaker, utterance_id, duration. "
             "The minor number is the reader's version; the patch number a digest of it, the reviewed label-table "
             "rows, the split rule, the audio decoding and the rating rules: it changes when any of them changes, "
             "so data prepared under other ones is refused instead of read silently.",
}


def tfds_name(corpus: str) -> str:
    """The TFDS dataset name of a corpus: snake_case ('crema-d' -> 'crema_d')."""
    name = re.sub(r"[^a-z0-9]+", "_", corpus.lower()).strip("_")
    return name if name[:1].isalpha() else f"corpus_{name}"


def reader_version(reader: str) -> int:
    """The explicit version of a reader: a registered reader's (@reader), the manifest's or EmoBox's lists'."""
    from exhubert_jax.data.sources import emobox

    own = {MANIFEST: readers.MANIFEST_VERSION, EMOBOX: emobox.READER_VERSION}
    return own[reader] if reader in own else READERS[reader].version


def version_parts(entry: Corpus) -> dict[str, Any]:
    """What a corpus's version is made of: SCHEMA, its reader and the reader's version (for an EmoBox fold also
    the corpus reader that supplies the speakers), its rows of the shipped label table, the split rule, the audio
    decoding, the rating rules and the label-distribution rule."""
    from exhubert_jax.data.sources import dimensions, soft_labels

    speakers = CORPORA.get(base_name(entry.name))
    parts = {"schema": SCHEMA, "reader": [entry.reader, reader_version(entry.reader)],
             "labels": load_label_table().fingerprint(base_name(entry.name)), "splits": splits.split_rule(),
             "audio": audio.decoding_rule(), "dimensions": dimensions.rating_rule(),
             "soft_labels": soft_labels.soft_label_rule()}
    if entry.reader == EMOBOX and speakers is not None and speakers.reader in READERS:
        parts["speakers"] = [speakers.reader, reader_version(speakers.reader)]
    return parts


def corpus_version(entry: Corpus) -> str:
    """'SCHEMA.READER.DIGEST': READER is the reader's version, DIGEST a digest of version_parts."""
    parts = version_parts(entry)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{SCHEMA}.{parts['reader'][1]}.{int(digest[:12], 16) % 10 ** 8}"


def features(native_labels: list[str] | tuple[str, ...]) -> tfds.features.FeaturesDict:
    """The example features: raw 16 kHz int16 audio, the 6-class label and the corpus's own label, and the
    annotators' label distributions over both."""
    return tfds.features.FeaturesDict({
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding="bytes",
                                      doc=f"mono int16 PCM at {SAMPLE_RATE} Hz (divide by 32768 for [-1, 1))"),
        "label": tfds.features.ClassLabel(names=list(CLASSES), doc="arousal x valence class (-1: no majority label)"),
        "native_label": tfds.features.ClassLabel(names=list(native_labels),
                                                 doc="the corpus's own label (-1: no majority label)"),
        "speaker": tfds.features.Text(doc="speaker id ('' when the corpus does not give one)"),
        "utterance_id": tfds.features.Text(doc="the source file, relative to the corpus folder"),
        "duration": tfds.features.Scalar(dtype=np.float32, doc="seconds"),
        "label_dist": tfds.features.Tensor(shape=(len(CLASSES),), dtype=np.float32,
                                           doc="the annotators' distribution over the 6 classes (all 0: none)"),
        "native_label_dist": tfds.features.Tensor(shape=(len(native_labels),), dtype=np.float32,
                                                  doc="the annotators' distribution over the corpus's own labels "
                                                      "(all 0: none)"),
    })


def _instructions(entry: Corpus) -> str:
    layout = f" (layout: {READERS[entry.reader].layout.rstrip('.')})" if entry.reader in READERS else ""
    how = ("Write a manifest (CSV or JSONL with columns path,label[,speaker][,split][,gender][,language]) and pass "
           "it with --manifest."
           if entry.reader == MANIFEST else f"Pass the folder as downloaded with --source DIR{layout}.")
    return (f"{entry.title}. Obtain it yourself: {entry.licence}. Reference: {entry.citation}. {how} "
            f"Then run: python -m exhubert_jax.data.prepare --corpus {entry.name} ...{' ' + entry.notes if entry.notes else ''}")


class CorpusBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the per-corpus builders: writes the examples of a plan (see the module docstring)."""

    corpus: Corpus
    RELEASE_NOTES = RELEASE_NOTES
    url_infos = None  # nothing is downloaded (TFDS would look for a checksums file next to the code)

    def __init__(self, *, plan: Any = None, **kwargs: Any):
        self.plan = plan
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        e = self.corpus
        return tfds.core.DatasetInfo(
            builder=self, description=f"{e.title} ({e.language}; {e.group}), prepared for ExHuBERT. {e.notes}".strip(),
            features=features(self.plan.native if self.plan is not None else ()),
            supervised_keys=("audio", "label"), citation=e.citation, metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # record i is the i-th utterance in sorted order, as planned
            license=e.licence)

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        counts = self.plan.counts()
        return {s: self._generate_examples(s) for s in SPLITS if counts.get(s)}  # TFDS refuses empty splits

    def _generate_examples(self, split: str):
        yield from self.plan.examples(split)

    def _download_and_prepare(self, dl_manager: Any, download_config: Any) -> Any:
        out = super()._download_and_prepare(dl_manager, download_config)
        self.info.metadata.update(self.plan.report())  # written with dataset_info.json, after every split
        return out

    def _log_download_bytes(self) -> None:  # TFDS prints these to stdout; our CLI keeps stdout for its JSON
        pass

    def _log_download_done(self) -> None:
        pass


class _UncompressedArrayRecord(tfds.core.file_adapters.ArrayRecordFileAdapter):
    """array_record written without compression. TFDS 4.9.10 writes 'group_size:1', which compresses: PCM shrinks
    by only ~10 % while decompressing halves the read speed. Readers need no option: the files are plain
    array_record either way."""

    @classmethod
    def write_examples(cls, path: Any, iterator: Any) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        writer = ArrayRecordWriter(os.fspath(path), "group_size:1,uncompressed")
        try:
            for _, serialized_example in iterator:
                writer.write(serialized_example)
        finally:
            writer.close()


@contextlib.contextmanager
def uncompressed_array_record() -> Iterator[None]:
    """Within this block, TFDS writes array_record files uncompressed (its adapter table is restored after)."""
    table, fmt = tfds.core.file_adapters.ADAPTER_FOR_FORMAT, tfds.core.file_adapters.FileFormat.ARRAY_RECORD
    before = table[fmt]
    table[fmt] = _UncompressedArrayRecord
    try:
        yield
    finally:
        table[fmt] = before


def _make(entry: Corpus) -> type[CorpusBuilder]:
    attrs = {"name": tfds_name(entry.name), "corpus": entry, "VERSION": tfds.core.Version(corpus_version(entry)),
             "MANUAL_DOWNLOAD_INSTRUCTIONS": _instructions(entry), "__doc__": f"{entry.title} ({entry.citation})",
             "__module__": __name__}
    cls_name = "".join(p.capitalize() for p in tfds_name(entry.name).split("_"))
    return type(cls_name, (CorpusBuilder,), attrs, skip_registration=True)


@functools.lru_cache(maxsize=None)
def _registry_builder(entry: Corpus) -> type[CorpusBuilder]:
    return _make(entry)


def builder_class(entry: Corpus) -> type[CorpusBuilder]:
    """The builder of a corpus: the registry's class (one per entry), or a new one for a user (manifest) corpus."""
    return _registry_builder(entry) if CORPORA.get(entry.name) == entry else _make(entry)
