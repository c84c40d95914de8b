"""TensorFlow Datasets builders for the corpora: one class per registry corpus, generated from the registry, and
one per user (manifest) corpus. Files are array_record and audio is an int16 `Tensor` at 16 kHz (TFDS's `Audio`
feature needs TensorFlow; a `Tensor` does not), so building and reading need no TensorFlow.

The examples themselves come from a *plan* (prepare.py): an object with `native` (the corpus's labels),
`counts()` ({split: planned examples}), `examples(split)` (yields (key, example)) and `report()` (the metadata
written next to the data)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import re
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from . import audio, splits
from .audio import SAMPLE_RATE
from .corpora import CORPORA, EMOBOX, MANIFEST, Corpus, base_name
from .labels import CLASSES, load_label_table
from .readers import READERS, SPLITS, read_manifest

SCHEMA = 1  # the features below and the folder layout; bump by hand when they change
FILE_FORMAT = "array_record"

RELEASE_NOTES = {
    "1.0.*": "Features audio (int16, 16 kHz), label (6 classes), native_label, speaker, utterance_id, duration. "
             "The patch number is a digest of the corpus's reader, the reviewed label-table rows, the split rule "
             "and the audio decoding: it changes when any of them changes, so data prepared by another version "
             "of them is refused instead of read silently.",
}


def tfds_name(corpus: str) -> str:
    """The TFDS dataset name of a corpus: snake_case ('crema-d' -> 'crema_d')."""
    name = re.sub(r"[^a-z0-9]+", "_", corpus.lower()).strip("_")
    return name if name[:1].isalpha() else f"corpus_{name}"


def corpus_version(entry: Corpus) -> str:
    """'SCHEMA.0.DIGEST': DIGEST changes with the corpus's reader, its rows of the shipped label table, the split
    rule (splits.py), the audio decoding (audio.py) and the dimensional labels' rules (dimensions.py); a fold's,
    with its corpus's label rows."""
    from . import dimensions, emobox

    readers = {MANIFEST: read_manifest, EMOBOX: emobox}
    reader = readers[entry.reader] if entry.reader in readers else READERS[entry.reader]
    h = hashlib.sha256()
    for part in (inspect.getsource(reader), inspect.getsource(splits), inspect.getsource(audio),
                 inspect.getsource(dimensions),
                 load_label_table().fingerprint(base_name(entry.name))):
        h.update(part.encode() + b"\0")
    return f"{SCHEMA}.0.{int(h.hexdigest()[:12], 16) % 10 ** 8}"


def features(native_labels: list[str] | tuple[str, ...]) -> tfds.features.FeaturesDict:
    """The example features: raw 16 kHz int16 audio, the 6-class label and the corpus's own label."""
    return tfds.features.FeaturesDict({
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding="bytes",
                                      doc=f"mono int16 PCM at {SAMPLE_RATE} Hz (divide by 32768 for [-1, 1))"),
        "label": tfds.features.ClassLabel(names=list(CLASSES), doc="arousal x valence class"),
        "native_label": tfds.features.ClassLabel(names=list(native_labels), doc="the corpus's own label"),
        "speaker": tfds.features.Text(doc="speaker id ('' when the corpus does not give one)"),
        "utterance_id": tfds.features.Text(doc="the source file, relative to the corpus folder"),
        "duration": tfds.features.Scalar(dtype=np.float32, doc="seconds"),
    })


def _instructions(entry: Corpus) -> str:
    how = ("Write a manifest (CSV or JSONL with columns path,label[,speaker][,split]) and pass it with --manifest."
           if entry.reader == MANIFEST else "Pass the folder as downloaded with --source DIR.")
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
def _registry_builders() -> dict[str, type[CorpusBuilder]]:
    return {name: _make(entry) for name, entry in CORPORA.items()}


def builder_class(entry: Corpus) -> type[CorpusBuilder]:
    """The builder of a corpus: the registry's class, or a new one for a user (manifest) corpus."""
    if CORPORA.get(entry.name) == entry:
        return _registry_builders()[entry.name]
    return _make(entry)
