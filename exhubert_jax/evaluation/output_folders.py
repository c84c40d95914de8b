"""Where evaluations are written: one folder per evaluation, named by its corpora, split, input protocol and label
space (written whole, so it never mixes two runs), and an index of every evaluation beside those folders.

    eval/demo-test-masked-emotion/   results.md, results.json, confusion_<corpus>.png/.json, reliability_<corpus>.png
    eval/demo-test-card-emotion/     ...
    eval/index.json, eval/index.md   one entry per folder: time, corpora, split, input, labels, the mean over corpora
                                     of every registered metric (metrics.METRICS), checkpoint, files
    eval/timeline/fixed-window3s-hop1s/, eval/timeline/vad/   timelines (evaluate.py --timeline), a folder per
                                     segmentation and window (timeline_name)

An entry's means are under "means" (metric -> mean, None when undefined); "mean_uar" stays beside them for the
readers of older indexes, and entries without "means" show their mean_uar and '–' for the other metrics.
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

from exhubert_jax.evaluation.metrics import METRICS
from exhubert_jax.process.atomic_files import atomic_directory, write_text

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


def timeline_name(segments: str, window_s: float, hop_s: float) -> str:
    """The folder of the timelines of one segmentation: '<segments>-window<W>s-hop<H>s' for fixed windows, e.g.
    fixed-window3s-hop1s, or 'vad' (which has no window), so timelines of other settings never replace them."""
    return "-".join(("fixed", f"window{window_s:g}s", f"hop{hop_s:g}s")) if segments == "fixed" else segments


def mean_of(results: Sequence[dict], name: str) -> float | None:
    """The unweighted mean of metric `name` over the results where it is defined (None when it is nowhere), as the
    tables' average."""
    values = [r.get(name) for r in results]
    defined = [float(v) for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def mean_uar(results: Sequence[dict]) -> float | None:
    """The unweighted mean UAR of the results whose UAR is defined (None when none is), as the tables' average."""
    return mean_of(results, "uar")


def means(results: Sequence[dict]) -> dict[str, float | None]:
    """{metric: mean_of} for every registered metric, in registry order: an index entry's "means"."""
    return {k: mean_of(results, k) for k in METRICS}


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


def _entry_mean(e: dict, name: str) -> float | None:
    """An index entry's mean of a metric: from its "means", or its "mean_uar" (entries written before "means")."""
    m = e.get("means") or {}
    return m[name] if name in m else (e.get("mean_uar") if name == "uar" else None)


def index_markdown(runs: Sequence[dict]) -> str:
    """index.md: one row per evaluation, newest first, with the mean of every registered metric, linking its
    results."""
    heads = " | ".join(f"mean {m.heading}" for m in METRICS.values())
    lines = ["# Evaluations", "", f"| time (UTC) | corpora | split | input | labels | {heads} | checkpoint | results |",
             "|---|---|---|---|---|" + "---:|" * len(METRICS) + "---|---|"]
    for e in reversed(runs):
        shown = " | ".join(_shown(_entry_mean(e, k), m.percent) for k, m in METRICS.items())
        main = e.get("main", "")
        lines.append(f"| {e['time']} | {', '.join(e['corpora'])} | {e['split']} | {e['input']} | {e['labels']} | "
                     f"{shown} | `{e['checkpoint']}` | [{e['path']}/{main}]({e['path']}/{main}) |")
    return "\n".join(lines) + "\n"


def _shown(v: float | None, percent: bool) -> str:
    """A mean in % with one decimal (or with 3 decimals for a metric not in %); '–' when undefined."""
    if v is None or math.isnan(v):
        return "–"
    return f"{100 * v:.1f}" if percent else f"{v:.3f}"


def eval_root(out: str | None, spec: str, checkpoint: Path) -> Path:
    """Where evaluations go: `out` (--out), else CHECKPOINT/eval, or for a checkpoint given as a Hub id (`spec`)
    eval/ORG--NAME[@REVISION] in the working directory, never inside the Hugging Face or conversion cache (which
    another revision of the model replaces)."""
    from exhubert_jax.hub.repos import parse_hub_id

    if out:
        return Path(out)
    hub = parse_hub_id(spec)
    if hub is None:
        return Path(checkpoint) / "eval"
    return Path("eval") / (hub.repo.replace("/", "--") + (f"@{hub.revision}" if hub.revision else ""))
