"""Reading prepared corpora: TensorFlow Datasets opened with builder_from_directory(...).as_data_source() (random
access, no TensorFlow), after checking their version and their files.

Layout of a prepared corpus under the data dir:

    {data_dir}/{corpus}/info.json        the prepare record: current version, its files' sizes, the fingerprint
                                         of the inputs, when it was prepared, the command that rebuilds it, the
                                         summary
    {data_dir}/{corpus}/{version}/       a TFDS dataset (dataset_info.json, features.json, metadata.json,
                                         {tfds_name}-{split}.array_record-NNNNN-of-NNNNN)
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from exhubert_jax.data.audio import from_pcm16
from exhubert_jax.data.errors import DataError, PreparedDataError, UnknownCorpusError
from exhubert_jax.data.sources.labels import CLASSES

RECORD = "info.json"


def default_data_dir() -> Path:
    """$EXHUBERT_DATA, else data/prepared (relative to the working directory)."""
    return Path(os.environ.get("EXHUBERT_DATA") or "data/prepared")


def read_record(directory: str | Path) -> dict[str, Any] | None:
    """The prepare record of a corpus folder, or None when there is none (or it is unreadable)."""
    path = Path(directory) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "version" in record and "files" in record else None


def file_sizes(version_dir: Path) -> dict[str, int]:
    """{file name: size in bytes} of a written dataset folder (recorded, then checked before every use)."""
    return {p.name: p.stat().st_size for p in sorted(version_dir.iterdir()) if p.is_file()}


def check_files(directory: Path, record: dict[str, Any]) -> str | None:
    """The first file of a prepared corpus that is missing or not the size it was written with, as a message."""
    for name, size in record["files"].items():
        path = directory / record["version"] / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} is {path.stat().st_size} bytes, {size} when written (truncated or overwritten)"
    return None


class _Unexpected(ValueError):
    """A record that is not laid out as parse_example expects (it then falls back to protobuf)."""


def _varint(b: bytes, i: int) -> tuple[int, int]:
    """(value, next position) of the protobuf varint at b[i]."""
    value, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        if c < 128:
            return value, i
        shift += 7


def _fields(b: bytes, i: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each field in b[i:end], all of which must be length-delimited."""
    out = []
    while i < end:
        key, i = _varint(b, i)
        if key & 7 != 2:
            raise _Unexpected(f"wire type {key & 7}")
        n, i = _varint(b, i)
        out.append((key >> 3, i, i + n))
        i += n
    if i != end:
        raise _Unexpected("overrun")
    return out


def _scan(b: bytes) -> dict[bytes, tuple[int, int, int]]:
    """{feature name: (kind, start, end)} of a tf.train.Example whose features each hold one value: kind 1 is
    bytes (b[start:end]), 2 packed floats, 3 packed int64 varints."""
    (top, start, end), = _fields(b, 0, len(b))  # Example.features
    out = {}
    for _, entry_start, entry_end in _fields(b, start, end):  # Features.feature: map entries {1: key, 2: Feature}
        parts = {f: (s, e) for f, s, e in _fields(b, entry_start, entry_end)}
        (kind, s, e), = _fields(b, *parts[2])  # the Feature's one list
        (_, vs, ve), = _fields(b, s, e)  # the list's values (one bytes value, or packed numbers)
        out[bytes(b[parts[1][0]:parts[1][1]])] = (kind, vs, ve)
    return out


def _parse_proto(record: bytes) -> dict[str, Any]:
    from tensorflow_datasets.proto import tf_example_pb2

    f = tf_example_pb2.Example.FromString(record).features.feature
    return {"audio": np.frombuffer(f["audio"].bytes_list.value[0], dtype="<i2"),
            "label": f["label"].int64_list.value[0], "native_label": f["native_label"].int64_list.value[0],
            "speaker": f["speaker"].bytes_list.value[0], "utterance_id": f["utterance_id"].bytes_list.value[0],
            "duration": f["duration"].float_list.value[0],
            **{k: np.asarray(f[k].float_list.value, np.float32) for k in ("label_dist", "native_label_dist")}}


def _int64(value: int) -> int:
    """A protobuf int64 read as an unsigned varint, signed again (-1 is 2**64 - 1 on the wire)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_example(record: bytes) -> dict[str, Any]:
    """One serialized example (the tf.train.Example that TFDS writes for builders.features()) as
    {audio: int16 array, label, native_label, speaker, utterance_id, duration, label_dist, native_label_dist}: the
    same values as the builder's features.deserialize_example_np(record) (tested). It walks the protobuf wire format
    to the fields and views the audio in place: protobuf copies every waveform, and TFDS's own decoding costs more
    per example than reading it. A record laid out otherwise is parsed with protobuf."""
    try:
        f = _scan(record)
        (ka, sa, ea), (kl, sl, _), (kn, sn, _) = f[b"audio"], f[b"label"], f[b"native_label"]
        (ks, ss, es), (ku, su, eu), (kd, sd, ed) = f[b"speaker"], f[b"utterance_id"], f[b"duration"]
        (kp, sp, ep), (kq, sq, eq) = f[b"label_dist"], f[b"native_label_dist"]
        if (ka, kl, kn, ks, ku, kd, kp, kq) != (1, 3, 3, 1, 1, 2, 2, 2) or (ea - sa) % 2 or ed - sd != 4 \
                or (ep - sp) % 4 or (eq - sq) % 4:
            raise _Unexpected("feature kinds")
        return {"audio": np.frombuffer(record, dtype="<i2", count=(ea - sa) // 2, offset=sa),
                "label": _int64(_varint(record, sl)[0]), "native_label": _int64(_varint(record, sn)[0]),
                "speaker": record[ss:es], "utterance_id": record[su:eu],
                "duration": float(np.frombuffer(record, dtype="<f4", count=1, offset=sd)[0]),
                "label_dist": np.frombuffer(record, dtype="<f4", count=(ep - sp) // 4, offset=sp),
                "native_label_dist": np.frombuffer(record, dtype="<f4", count=(eq - sq) // 4, offset=sq)}
    except (_Unexpected, ValueError, KeyError, IndexError):
        return _parse_proto(record)


def audio_of(record: bytes) -> np.ndarray:
    """The int16 audio of one serialized example, viewed in place: parse_example's walk, stopping at the audio
    entry (the batching hot path; labels come from the split's index)."""
    try:
        (_, start, end), = _fields(record, 0, len(record))
        i = start
        while i < end:  # Features.feature map entries, each {1: key, 2: Feature}
            key, i = _varint(record, i)
            n, i = _varint(record, i)
            if key != 0x0A:
                raise _Unexpected("map entry")
            (k, ks, ke), (v, vs, ve) = _fields(record, i, i + n)
            i += n
            if (k, v) != (1, 2):
                raise _Unexpected("map entry fields")
            if record[ks:ke] == b"audio":
                (kind, s, e), = _fields(record, vs, ve)
                (_, s, e), = _fields(record, s, e)
                if kind != 1 or (e - s) % 2:
                    raise _Unexpected("audio kind")
                return np.frombuffer(record, dtype="<i2", count=(e - s) // 2, offset=s)
        raise _Unexpected("no audio")
    except (_Unexpected, ValueError, KeyError, IndexError):
        return _parse_proto(record)["audio"]


_PARTS = {"schema": "the dataset schema", "reader": "the reader or its version", "labels": "its label-table rows",
          "splits": "the split rule", "audio": "the audio decoding", "dimensions": "the rating rules",
          "soft_labels": "the label-distribution rule",
          "speakers": "the version of the reader that gives its speakers"}


def what_changed(recorded: Any, now: dict[str, Any]) -> str:
    """Which parts of a corpus version (builders.version_parts) differ from those recorded at prepare time."""
    if not isinstance(recorded, dict):  # written before the parts were recorded
        return "the reader, label table, split rule or audio decoding changed since"
    now = json.loads(json.dumps(now))  # as recorded: tuples become lists
    changed = [_PARTS.get(k, k) for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k)]
    return f"{', '.join(changed) or 'its version rule'} changed since"


def _expected_version(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The version this code writes for the corpus (or fold) of a prepare record, and its parts."""
    from exhubert_jax.data.prepare.builders import corpus_version, version_parts
    from exhubert_jax.data.sources.corpora import base_name, fold_entry, get_corpus, user_corpus

    name = record["corpus"]
    try:
        entry = get_corpus(base_name(name))
    except UnknownCorpusError:
        entry = user_corpus(base_name(name))
    if name != base_name(name):
        entry = fold_entry(entry, name, record.get("reader"))
    return corpus_version(entry), version_parts(entry)


def _dense(rows: list | None, width: int) -> np.ndarray | None:
    """The index's sparse distributions ([[class, p], ...] or None per example) as float32 (N, width), 0 where an
    example has none; None when the index has none."""
    if rows is None:
        return None
    out = np.zeros((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        for c, p in row or ():
            out[i, int(c)] = p
    return out


def _strings(values: list | None) -> np.ndarray | None:
    """An index's per-example strings (None where unknown) as an object array; None when the index has none."""
    return None if values is None else np.asarray(values, dtype=object).reshape(-1)


def _languages(values: list | None, corpus: str, n: int) -> np.ndarray | None:
    """Each example's language: the index's, else the corpus registry's (None for a corpus outside it)."""
    from exhubert_jax.data.sources.corpora import base_name, get_corpus

    try:
        default = get_corpus(base_name(corpus)).language
    except UnknownCorpusError:
        default = None
    out = np.full(n, default, dtype=object) if values is None else _strings(values)
    out[np.equal(out, None)] = default
    return None if default is None and values is None else out


class PreparedSplit:
    """One split of a prepared corpus: len, random access, and per-example lengths without reading audio."""

    def __init__(self, corpus: "PreparedCorpus", name: str):
        self.name, self.corpus = name, corpus.name
        self.sample_rate = int(corpus.info["sample_rate"])
        self.native_labels: tuple[str, ...] = corpus.native_labels
        self._version_dir, self._command = corpus.version_dir, corpus.command
        index = corpus.info["index"].get(name, {"num_samples": [], "label": [], "native_index": []})
        self.num_samples = np.asarray(index["num_samples"], np.int64)
        self.labels = np.asarray(index["label"], np.int32)
        self.native_indices = np.asarray(index["native_index"], np.int32)
        # arousal, valence, dominance on [0, 1] (NaN where the corpus has none); None when it has none at all
        self.dims = (np.asarray([[np.nan if v is None else v for v in row] for row in index["dims"]],
                                np.float32).reshape(-1, 3) if "dims" in index else None)
        self.durations = (self.num_samples / self.sample_rate).astype(np.float32)
        # the annotators' label distributions, (N, 6) and (N, native labels), all-0 rows where an example has none;
        # None when the corpus has none at all. A label of -1: no hard label (kept for its distribution alone)
        self.dists = _dense(index.get("dist"), len(CLASSES))
        self.native_dists = _dense(index.get("native_dist"), len(self.native_labels))
        # per example: the decoded PCM's digest (prepare.plan.pcm_hash), the speaker's gender and the language
        # (the registry's where the example has none); None for a corpus prepared before they were recorded
        self.pcm_hashes = _strings(index.get("pcm_hash"))
        self.genders = _strings(index.get("gender"))
        self.languages = _languages(index.get("language"), corpus.name, len(self.num_samples))
        # each source file's own sample rate (None where unknown); None for a corpus prepared before it was recorded
        self.source_rates = None if index.get("source_rate") is None else \
            np.asarray(index["source_rate"], dtype=object).reshape(-1)
        self.fingerprint = corpus.record.get("fingerprint")  # a run records it to notice a corpus prepared again
        self.prepared_at = corpus.record.get("prepared_at")  # when (UTC); None for a corpus prepared before it was kept
        self._source = None
        self._n_records, self._rows = len(self.num_samples), None  # _rows: the records of hard_labelled()'s rows

    def __len__(self) -> int:
        return int(self.num_samples.shape[0])

    def hard_labelled(self) -> "PreparedSplit":
        """This split without its examples that have no hard label (kept for their label distribution alone, by
        prepare --keep-no-majority): what hard-label training and validation read. Itself when every example has
        one."""
        keep = np.flatnonzero(self.labels >= 0)
        if len(keep) == len(self):
            return self
        view = copy.copy(self)
        view._rows = keep if self._rows is None else self._rows[keep]
        for name in ("num_samples", "labels", "native_indices", "durations", "dims", "dists", "native_dists",
                     "pcm_hashes", "genders", "languages", "source_rates"):
            value = getattr(self, name)
            setattr(view, name, None if value is None else value[keep])
        return view

    def _records(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            self._source = tfds.builder_from_directory(str(self._version_dir)).as_data_source(
                split=self.name, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)  # see parse_example
            if len(self._source) != self._n_records:
                raise PreparedDataError(f"{self._version_dir}: split {self.name} has {len(self._source)} examples, "
                                        f"its index {self._n_records}; rebuild it: {self._command}")
        return self._source

    def _read(self, indices: Sequence[int], parse) -> list:
        source = self._records()
        try:
            rows = [int(i) for i in indices] if self._rows is None else [int(self._rows[int(i)]) for i in indices]
            return [parse(r) for r in source.__getitems__(rows)]
        except Exception as e:  # noqa: BLE001 - a damaged file surfaces as a reader error of any type
            raise PreparedDataError(f"{self._version_dir}: split {self.name} cannot be read "
                                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                                    f"rebuild it: {self._command}") from None

    def read_audio(self, indices: Sequence[int]) -> list[np.ndarray]:
        """int16 PCM of several examples in one batched read (their labels are in .labels/.native_indices)."""
        return self._read(indices, audio_of) if len(indices) else []

    def read_pcm(self, indices: Sequence[int]) -> list[tuple[dict[str, Any], np.ndarray]]:
        """(fields, int16 PCM) for several examples in one batched read; fields are label, native_index,
        native_label, speaker, path and dims (arousal, valence, dominance on [0, 1], NaN unknown; None when the corpus
        has none)."""
        if len(indices) == 0:
            return []
        return [({**self._fields(ex), "dims": None if self.dims is None else tuple(map(float, self.dims[int(i)]))},
                 ex["audio"]) for i, ex in zip(indices, self._read(indices, parse_example))]

    def utterance_fields(self, chunk: int = 256) -> list[dict[str, Any]]:
        """read_pcm's fields (label, native_index, native_label, speaker, path) of every example, in split order."""
        return [fields for start in range(0, len(self), chunk)
                for fields, _ in self.read_pcm(range(start, min(len(self), start + chunk)))]

    def _fields(self, ex: dict[str, Any]) -> dict[str, Any]:
        native = int(ex["native_label"])
        speaker = ex["speaker"].decode() if isinstance(ex["speaker"], bytes) else str(ex["speaker"])
        path = ex["utterance_id"]
        return {"label": int(ex["label"]), "native_index": native, "native_label": self.native_labels[native],
                "speaker": speaker or None, "path": path.decode() if isinstance(path, bytes) else str(path)}

    def _example(self, fields: dict[str, Any], pcm: np.ndarray) -> dict[str, Any]:
        return dict(audio=from_pcm16(pcm), label=fields["label"], native_label=fields["native_label"],
                    native_index=fields["native_index"], speaker=fields["speaker"], corpus=self.corpus,
                    duration=pcm.shape[0] / self.sample_rate, dims=fields["dims"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = range(len(self))[i]
        return self._example(*self.read_pcm([i])[0])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self._example(f, p) for f, p in self.read_pcm(indices)]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}  # readers are reopened lazily in each process

    def __repr__(self) -> str:
        return f"PreparedSplit({self.corpus}/{self.name}, n={len(self)}, {float(self.durations.sum()):.1f} s)"


class PreparedCorpus:
    """A prepared corpus folder: its TFDS dataset, checked, plus one PreparedSplit per split."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        record = read_record(self.directory)
        if record is None:
            raise PreparedDataError(f"{self.directory}: no readable {RECORD} (not a prepared corpus, or prepared "
                                    "by an older version: prepare it again)")
        self.record = record
        self.command = record.get("command", "python -m exhubert_jax.data.prepare --corpus NAME ...")
        try:
            expected, parts = _expected_version(record)
        except DataError as e:
            raise PreparedDataError(f"{self.directory}: {e}") from None
        if record["version"] != expected:
            raise PreparedDataError(
                f"{self.directory}: prepared as version {record['version']}, this code reads {expected} "
                f"({what_changed(record.get('version_parts'), parts)}); prepare it again: {self.command}")
        problem = check_files(self.directory, record)
        if problem:
            raise PreparedDataError(f"{problem}; rebuild it: {self.command}")
        self.version_dir = self.directory / record["version"]
        import tensorflow_datasets as tfds

        self.builder = tfds.builder_from_directory(str(self.version_dir))
        self.info: dict[str, Any] = dict(self.builder.info.metadata or {})
        self._splits: dict[str, PreparedSplit] = {}

    @property
    def name(self) -> str:
        """Corpus name."""
        return self.record["corpus"]

    @property
    def native_labels(self) -> tuple[str, ...]:
        """The corpus's native labels, sorted; native_index points into this."""
        return tuple(self.builder.info.features["native_label"].names)

    @property
    def splits(self) -> tuple[str, ...]:
        """Names of the non-empty splits."""
        return tuple(s for s in ("train", "validation", "test") if s in self.builder.info.splits)

    def split(self, name: str) -> PreparedSplit:
        """Random-access source for one split ('train', 'validation' or 'test')."""
        if name not in self.splits:
            raise PreparedDataError(f"{self.name}: no split {name!r}; splits are {', '.join(self.splits)}")
        if name not in self._splits:
            self._splits[name] = PreparedSplit(self, name)
        return self._splits[name]

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.split(s))}" for s in self.splits)
        return f"PreparedCorpus({self.name} {self.record['version']}: {counts})"


def prepared_names(data_dir: str | Path | None = None) -> list[str]:
    """Names of the corpora prepared under data_dir (default: default_data_dir()), sorted."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return sorted(p.parent.name for p in root.glob(f"*/{RECORD}")) if root.is_dir() else []


def open_prepared(path_or_name: str | Path, data_dir: str | Path | None = None) -> PreparedCorpus:
    """Open a prepared corpus by folder path, or by name under data_dir (default: default_data_dir())."""
    path = Path(path_or_name)
    if (path / RECORD).is_file():
        return PreparedCorpus(path)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if (root / str(path_or_name) / RECORD).is_file():
        return PreparedCorpus(root / str(path_or_name))
    raise PreparedDataError(f"no prepared corpus {str(path_or_name)!r} under {root} "
                            f"(prepared there: {', '.join(prepared_names(root)) or 'none'}); run "
                            "python -m exhubert_jax.data.prepare --corpus NAME --source DIR first")
