"""Where evaluations are written: one folder per evaluation, named by its corpora, split, input protocol and label
space (written whole, so it never mixes two runs), and an index of every evaluation beside those folders.

    eval/demo-test-masked-emotion/   results.md, results.json, confusion_<corpus>.png/.json, reliability_<corpus>.png
    eval/demo-test-card-emotion/     ...
    eval/index.json, eval/index.md   one entry per folder: time, corpora, split, input, labels, checkpoint, files
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from exhubert_jax.runtime.atomic_files import atomic_directory, write_text

INDEX_JSON, INDEX_MD, INDEX_LOCK = "index.json", "index.md", ".index.lock"
LONGEST_TAG = 60  # a corpus list longer than this is named by its count and a hash


def corpora_tag(spec: str) -> str:
    """--corpus as a folder name: 'demo', 'emodb+ravdess' (as given, repeats dropped; a group stays its name), or
    '12-corpora-<hash>' for a long list."""
    corpora = list(dict.fromkeys(s.strip().replace("/", "_") for s in spec.split(",") if s.strip()))
    tag = "+".join(corpora)
    if len(tag) <= LONGEST_TAG:
        return tag
    return f"{len(corpora)}-corpora-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"


def labels_tag(label_spaces: Iterable[str]) -> str:
    """The label space(s) of a run's corpora: 'emotion', 'native' or 'emotion+native'."""
    return "+".join(sorted(set(label_spaces)))


def run_name(spec: str, split: str, input_mode: str, label_spaces: Iterable[str]) -> str:
    """The folder of one evaluation: '<corpora>-<split>-<input>-<label space(s)>', e.g. demo-test-masked-emotion."""
    return "-".join((corpora_tag(spec), split, input_mode, labels_tag(label_spaces)))


def mean_uar(results: Sequence[dict]) -> float | None:
    """The unweighted mean UAR of the results whose UAR is defined (None when none is), as the tables' average."""
    defined = [r["uar"] for r in results if not math.isnan(r["uar"])]
    return sum(defined) / len(defined) if defined else None


@contextlib.contextmanager
def run_folder(root: str | os.PathLike, name: str) -> Iterator[Path]:
    """Yield an empty folder to write one evaluation into; it replaces ROOT/NAME whole when the block ends (an
    error or Ctrl-C leaves the previous ROOT/NAME as it was, and no empty ROOT it made)."""
    root = Path(root)
    made = not root.exists()
    try:
        with atomic_directory(root / name) as tmp:
            yield tmp
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                root.rmdir()  # only when empty
        raise


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold ROOT's index lock (two evaluations finishing at once both get their entry)."""
    fd = os.open(root / INDEX_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_index(root: str | os.PathLike) -> list[dict]:
    """The entries of ROOT/index.json, oldest first ([] when there is none or it cannot be read)."""
    try:
        return list(json.loads((Path(root) / INDEX_JSON).read_text())["runs"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def record(root: str | os.PathLike, entry: dict[str, Any]) -> Path:
    """Add one evaluation to ROOT/index.json and index.md (replacing the entry of the same folder, dropping entries
    whose folder is gone); both files are rewritten atomically. Returns index.md's path."""
    root = Path(root)
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    with _locked(root):
        runs = [e for e in read_index(root) if e.get("path") != entry["path"] and (root / str(e.get("path"))).is_dir()]
        runs.append(entry)
        write_text(root / INDEX_JSON, json.dumps({"runs": runs}, indent=1) + "\n")
        return write_text(root / INDEX_MD, index_markdown(runs))


def index_markdown(runs: Sequence[dict]) -> str:
    """index.md: one row per evaluation, newest first, linking its results."""
    lines = ["# Evaluations", "", "| time (UTC) | corpora | split | input | labels | mean UAR (%) | checkpoint | "
             "results |", "|---|---|---|---|---|---:|---|---|"]
    for e in reversed(runs):
        uar = e.get("mean_uar")
        shown = "–" if uar is None else f"{100 * uar:.1f}"
        main = e.get("main", "")
        lines.append(f"| {e['time']} | {', '.join(e['corpora'])} | {e['split']} | {e['input']} | {e['labels']} | "
                     f"{shown} | `{e['checkpoint']}` | [{e['path']}/{main}]({e['path']}/{main}) |")
    return "\n".join(lines) + "\n"
