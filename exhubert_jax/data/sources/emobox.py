"""EmoBox's published metadata (repository emo-box/EmoBox, folder data/<corpus>/): the corpus list
<corpus>.jsonl and one folder per fold, fold_N/<corpus>_{train,valid,test}_fold_N.jsonl (valid only where the
corpus has an official one). Each line is a JSON object with key, wav (a path relative to the folder the corpora
were downloaded into), emo, length and more. EmoBox's lines name no speaker; the corpus's own reader supplies it
where the registry has one."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

from exhubert_jax.data.errors import DataError, MissingSourceError
from exhubert_jax.data.sources.readers import READERS, Utterance, read_utf8

SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}  # our split -> EmoBox's file word
_FOLD_DIR = re.compile(r"^fold_?(\d+)$")
READER_VERSION = 1  # bump when a change to this module changes the utterances (or speakers) a fold's lists give


class EmoBoxError(DataError):
    """EmoBox metadata that is missing or not laid out as EmoBox publishes it."""


def _bad(path: Path, line: int, problem: str) -> EmoBoxError:
    """The error for one bad line of a list file."""
    return EmoBoxError(f"{path}:{line}: {problem}")


def is_corpus_folder(folder: Path) -> bool:
    """True for an EmoBox corpus folder: it holds <name>.jsonl."""
    return (folder / f"{folder.name}.jsonl").is_file()


def check_root(root: str | Path) -> Path:
    """The folder EmoBox's wav paths are relative to; MissingSourceError when it does not exist."""
    if not Path(root).is_dir():
        raise MissingSourceError(str(root), "--emobox-root (the folder the corpora were downloaded into)")
    return Path(root)


def corpus_folders(directory: str | Path) -> list[Path]:
    """The corpus folders of DIR: DIR itself when it is one, else its sub-folders that are (EmoBox's data/)."""
    d = Path(directory)
    if not d.is_dir():
        raise MissingSourceError(str(d), "EmoBox metadata folder")
    if is_corpus_folder(d):
        return [d]
    found = sorted(p for p in d.iterdir() if p.is_dir() and is_corpus_folder(p))
    if not found:
        raise EmoBoxError(f"{d}: not an EmoBox corpus folder (<name>/<name>.jsonl and fold_N/) nor a folder of "
                          "them (EmoBox's data/)")
    return found


def _field(row: dict, name: str, path: Path, line: int) -> str:
    """A required non-empty string field of one line."""
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, line, f"missing or empty {name!r} (EmoBox lines have key, wav, emo, ...)")
    return value.strip()


def read_list(path: Path, root: str | Path) -> dict[str, Utterance]:
    """{key: utterance} of one EmoBox list; wav paths are resolved against root, origin is 'file:line'."""
    if not path.is_file():
        raise MissingSourceError(str(path), "EmoBox list")
    out: dict[str, Utterance] = {}
    text = read_utf8(path, lambda problem: EmoBoxError(f"{path}: {problem}"))
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _bad(path, line, f"not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise _bad(path, line, "each line must be a JSON object")
        key, wav, emo = (_field(row, k, path, line) for k in ("key", "wav", "emo"))
        if "start_time" in row or "end_time" in row:
            raise _bad(path, line, f"{key} is a segment (start_time/end_time) of a longer file; "
                                "segments are not supported")
        if key in out:
            raise _bad(path, line, f"key {key!r} is listed twice (first at {out[key].origin})")
        full = os.path.normpath(wav if os.path.isabs(wav) else os.path.join(root, wav))
        out[key] = Utterance(full, emo, None, None, origin=f"{path}:{line}")
    if not out:
        raise EmoBoxError(f"{path}: no lines")
    return out


def _list_file(fold_dir: Path, corpus: str, word: str, n: int) -> Path | None:
    """fold_N/<corpus>_<word>_fold_N.jsonl (or EmoBox's older <corpus>_<word>_foldN.jsonl), if present."""
    for name in (f"{corpus}_{word}_fold_{n}.jsonl", f"{corpus}_{word}_fold{n}.jsonl"):
        if (fold_dir / name).is_file():
            return fold_dir / name
    return None


def fold_files(folder: Path) -> dict[int, dict[str, Path]]:
    """{fold number: {split: list file}} of a corpus folder; train and test lists are required, valid optional."""
    folds: dict[int, dict[str, Path]] = {}
    for fold_dir in sorted(folder.iterdir()):
        m = _FOLD_DIR.match(fold_dir.name)
        if not (m and fold_dir.is_dir()):
            continue
        n = int(m[1])
        files = {s: f for s, word in SPLIT_FILES.items() if (f := _list_file(fold_dir, folder.name, word, n))}
        for split in ("train", "test"):
            if split not in files:
                raise EmoBoxError(f"{fold_dir}: no {folder.name}_{SPLIT_FILES[split]}_fold_{n}.jsonl")
        folds[n] = files
    if not folds:
        raise EmoBoxError(f"{folder}: no fold_N/ folders")
    return dict(sorted(folds.items()))


def read_fold(files: dict[str, Path], root: str | Path, corpus: dict[str, Utterance]) -> list[Utterance]:
    """The utterances of one fold with their split, sorted; every key must be in the corpus list and in one split."""
    where: dict[str, str] = {}
    utts = []
    for split, path in files.items():
        for key, u in read_list(path, root).items():
            if key not in corpus:
                raise EmoBoxError(f"{u.origin}: key {key!r} is not in the corpus list")
            if key in where:
                raise EmoBoxError(f"{u.origin}: key {key!r} is also in {where[key]}")
            where[key] = u.origin
            utts.append(replace(u, split=split))
    return sorted(utts)


def known_speakers(reader: str, utts: list[Utterance]) -> tuple[dict[str, str], str]:
    """({path: speaker}, how) from the corpus's registry reader run on the folder that holds all the listed files;
    empty, with the reason, when there is no reader or it cannot read that folder."""
    if reader not in READERS:
        return {}, "the registry has no reader for this corpus"
    try:
        folder = os.path.commonpath([os.path.dirname(u.path) for u in utts])
    except ValueError:  # absolute and relative paths mixed, or several drives
        return {}, "the listed files share no folder"
    try:
        found = READERS[reader](folder)
    except DataError as e:
        return {}, f"the {reader} reader could not read {folder} ({e})"
    speakers = {os.path.normpath(u.path): u.speaker for u in found if u.speaker is not None}
    return speakers, f"the {reader} reader on {folder}"


def with_speakers(utts: list[Utterance], speakers: dict[str, str]) -> list[Utterance]:
    """The utterances with the speaker the reader gave their file (None where it gave none)."""
    return [replace(u, speaker=speakers.get(u.path)) for u in utts]
