"""EmoNet's corpus layout: one folder per corpus holding train.csv, devel.csv and test.csv (header file,label;
paths relative to the corpus folder), the corpus's own split. Speakers are not part of this layout."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from exhubert_jax.data.errors import DataError, ManifestError, MissingSourceError, UnknownCorpusError
from exhubert_jax.data.sources.corpora import Corpus, get_corpus
from exhubert_jax.data.sources.readers import Utterance, read_utf8

# split -> accepted list-file names, first preferred (EmoNet's training code names the validation list val.csv)
LISTS = {"train": ("train.csv",), "validation": ("devel.csv", "val.csv"), "test": ("test.csv",)}
_ALL = tuple(name for names in LISTS.values() for name in names)


def is_emonet_folder(folder: str | Path) -> bool:
    """True when a folder holds at least one of EmoNet's list files."""
    return any((Path(folder) / name).is_file() for name in _ALL)


def _list_file(folder: Path, split: str) -> Path:
    found = [folder / n for n in LISTS[split] if (folder / n).is_file()]
    if not found:
        raise MissingSourceError(str(folder / LISTS[split][0]), f"EmoNet {split} list")
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name} and {found[1].name} are there; keep one validation list")
    return found[0]


def _rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, file, label) of one list file; a bad header or row names the file and line."""
    text = read_utf8(path, lambda problem: ManifestError(str(path), None, problem))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in ("file", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(str(path), 1, f"missing column(s) {', '.join(missing)}; expected the header file,label")
    rows = []
    for row in reader:
        file, label = ((row.get(k) or "").strip() for k in ("file", "label"))
        if not file or not label:
            raise ManifestError(str(path), reader.line_num, "empty 'file' or 'label'")
        rows.append((reader.line_num, file, label))
    if not rows:
        raise ManifestError(str(path), None, "no rows")
    return rows


def read_emonet(folder: str | Path) -> list[Utterance]:
    """The utterances of one EmoNet-layout corpus folder, with the split of the list that names them
    (devel = validation) and no speakers."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingSourceError(str(folder), "EmoNet corpus folder")
    utts, seen = [], {}
    for split in LISTS:
        lst = _list_file(folder, split)
        for line, file, label in _rows(lst):
            path = Path(file) if Path(file).is_absolute() else folder / file
            where = f"{lst}:{line}"
            if str(path) in seen:
                raise ManifestError(str(lst), line, f"{file} is listed twice (first at {seen[str(path)]})")
            seen[str(path)] = where
            utts.append(Utterance(str(path), label, None, split, origin=where))
    return sorted(utts)


def find_corpora(root: str | Path) -> tuple[list[tuple[Path, Corpus]], list[tuple[list[Path], str]]]:
    """([(folder, registry entry)], [(folders, problem)]) for the corpus folders under an EmoNet root, named by a
    registry name or an alias; an unknown name, or two folders for one corpus, is a problem naming the folders."""
    root = Path(root)
    if not root.is_dir():
        raise MissingSourceError(str(root), "EmoNet folder")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and is_emonet_folder(d))
    if not folders:
        raise DataError(f"{root}: no corpus folders (subfolders holding {', '.join(_ALL)})")
    found: dict[str, list[tuple[Path, Corpus]]] = {}
    problems = []
    for d in folders:
        try:
            entry = get_corpus(d.name)
        except UnknownCorpusError:
            problems.append(([d], f"{d}: unknown corpus folder {d.name!r} (neither a registry name nor an EmoNet "
                                  f"alias; prepare it with --corpus NAME --source {d})"))
            continue
        found.setdefault(entry.name, []).append((d, entry))
    for name, hits in found.items():
        if len(hits) > 1:
            problems.append(([d for d, _ in hits], f"{root}: folders {', '.join(repr(d.name) for d, _ in hits)} "
                             f"are all corpus {name!r}; keep one (or prepare one with --corpus NAME --source DIR)"))
    return [hits[0] for hits in found.values() if len(hits) == 1], problems
