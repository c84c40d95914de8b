"""Reading prepared corpora: random access to 16 kHz audio and metadata, without TensorFlow."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .audio import from_pcm16
from .errors import PreparedDataError

FORMAT = "exhubert-prepared/1"
_MAGIC = b"EXR1"
_HEAD = struct.Struct("<4sI")


def default_data_dir() -> Path:
    """$EXHUBERT_DATA, else data/prepared (relative to the working directory)."""
    return Path(os.environ.get("EXHUBERT_DATA") or "data/prepared")


def prepared_names(data_dir: str | Path | None = None) -> list[str]:
    """Names of the corpora prepared under data_dir (default: default_data_dir()), sorted."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return sorted(p.parent.name for p in root.glob("*/info.json")) if root.is_dir() else []


def encode_record(header: dict[str, Any], pcm: np.ndarray) -> bytes:
    """One record: magic, header length, JSON header, int16 little-endian PCM."""
    head = json.dumps(header, sort_keys=True, ensure_ascii=False).encode()
    return _HEAD.pack(_MAGIC, len(head)) + head + np.ascontiguousarray(pcm, dtype="<i2").tobytes()


def decode_record(buf: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """(header, int16 PCM) of one record."""
    magic, n = _HEAD.unpack_from(buf)
    if magic != _MAGIC:
        raise PreparedDataError(f"not an exhubert record (magic {magic!r})")
    start = _HEAD.size + n
    return json.loads(buf[_HEAD.size:start]), np.frombuffer(buf, dtype="<i2", offset=start)


class PreparedSplit:
    """One split of a prepared corpus: len, random access, and per-example lengths without decoding audio."""

    def __init__(self, directory: Path, name: str, info: dict[str, Any]):
        self.name, self.corpus = name, info["corpus"]
        self.sample_rate = int(info["sample_rate"])
        self.native_labels: tuple[str, ...] = tuple(info["native_labels"])
        self._path = directory / f"{name}.array_record"
        index_path = directory / f"{name}.index.npz"
        if not self._path.is_file() or not index_path.is_file():
            raise PreparedDataError(f"{directory}: split {name!r} is incomplete (missing {self._path.name} "
                                    f"or {index_path.name}); prepare the corpus again with --force")
        with np.load(index_path, allow_pickle=False) as index:
            self.num_samples = index["num_samples"].astype(np.int64)
            self.labels = index["label"].astype(np.int32)
            self.native_indices = index["native_index"].astype(np.int32)
        self.durations = (self.num_samples / self.sample_rate).astype(np.float32)
        # what a run records to notice a corpus prepared again (other files, labels or splits) on resume
        self.fingerprint = hashlib.sha256(json.dumps([info, name], sort_keys=True).encode()).hexdigest()[:16]
        self._source = None

    def __len__(self) -> int:
        return int(self.num_samples.shape[0])

    def _records(self):
        if self._source is None:
            from array_record.python.array_record_data_source import ArrayRecordDataSource

            self._source = ArrayRecordDataSource([str(self._path)])
            if len(self._source) != len(self):
                raise PreparedDataError(f"{self._path}: {len(self._source)} records but the index has {len(self)}")
        return self._source

    def read_pcm(self, indices: Sequence[int]) -> list[tuple[dict[str, Any], np.ndarray]]:
        """(header, int16 PCM) for several examples in one batched read."""
        if len(indices) == 0:
            return []
        return [decode_record(b) for b in self._records().__getitems__([int(i) for i in indices])]

    def _example(self, header: dict[str, Any], pcm: np.ndarray) -> dict[str, Any]:
        return dict(audio=from_pcm16(pcm), label=int(header["label"]), native_label=header["native_label"],
                    native_index=int(header["native_index"]), speaker=header["speaker"], corpus=self.corpus,
                    duration=pcm.shape[0] / self.sample_rate)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = range(len(self))[i]
        return self._example(*self.read_pcm([i])[0])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self._example(h, p) for h, p in self.read_pcm(indices)]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}  # readers are reopened lazily in each process

    def __repr__(self) -> str:
        return f"PreparedSplit({self.corpus}/{self.name}, n={len(self)}, {float(self.durations.sum()):.1f} s)"


class PreparedCorpus:
    """A prepared corpus folder: info.json plus one PreparedSplit per split."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        info_path = self.directory / "info.json"
        if not info_path.is_file():
            raise PreparedDataError(f"{self.directory}: no info.json (not a prepared corpus)")
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        if self.info.get("format") != FORMAT:
            raise PreparedDataError(f"{info_path}: format {self.info.get('format')!r}, expected {FORMAT!r}; "
                                    "prepare the corpus again")
        self._splits: dict[str, PreparedSplit] = {}

    @property
    def name(self) -> str:
        """Corpus name."""
        return self.info["corpus"]

    @property
    def native_labels(self) -> tuple[str, ...]:
        """The corpus's native labels, sorted; native_index points into this."""
        return tuple(self.info["native_labels"])

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names."""
        return tuple(self.info["splits"])

    def split(self, name: str) -> PreparedSplit:
        """Random-access source for one split ('train', 'validation' or 'test')."""
        if name not in self.info["splits"]:
            raise PreparedDataError(f"{self.name}: no split {name!r}; splits are {', '.join(self.splits)}")
        if name not in self._splits:
            self._splits[name] = PreparedSplit(self.directory, name, self.info)
        return self._splits[name]

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={self.info['splits'][s]['n']}" for s in self.splits)
        return f"PreparedCorpus({self.name}: {counts})"


def open_prepared(path_or_name: str | Path, data_dir: str | Path | None = None) -> PreparedCorpus:
    """Open a prepared corpus by folder path, or by name under data_dir (default: default_data_dir())."""
    path = Path(path_or_name)
    if (path / "info.json").is_file():
        return PreparedCorpus(path)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if (root / str(path_or_name) / "info.json").is_file():
        return PreparedCorpus(root / str(path_or_name))
    have = prepared_names(root)
    raise PreparedDataError(f"no prepared corpus {str(path_or_name)!r} under {root} "
                            f"(prepared there: {', '.join(have) or 'none'}); run "
                            "python -m exhubert_jax.data.prepare --corpus NAME --source DIR first")
