"""Prepare a corpus: read, map labels, split, decode to 16 kHz int16, write array_record files + info.json.

    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb [--out data/prepared]
    python -m exhubert_jax.data.prepare --corpus mycorpus --manifest files.csv [--source DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .audio import SAMPLE_RATE, load_audio, to_pcm16
from .corpora import CORPORA, MANIFEST, Corpus, get_corpus, user_corpus
from .dataset import FORMAT, default_data_dir, encode_record
from .errors import AudioError, DataError, MissingSourceError, UnknownCorpusError, UnknownLabelError
from .labels import CLASSES, LabelRule, LabelTable, load_label_table
from .readers import READERS, SPLITS, Utterance, read_manifest
from .splits import assign_splits, auto_method, shared_speakers

ON_ERROR = ("skip", "stop")
_WRITER_OPTIONS = "group_size:1,uncompressed"


def _stderr(msg: str) -> None:
    """Print to stderr without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _resolve(corpus: str, manifest: str | Path | None) -> Corpus:
    """Registry entry; with a manifest, an unknown name becomes a user corpus."""
    try:
        return get_corpus(corpus)
    except UnknownCorpusError:
        if manifest is None:
            raise
        return user_corpus(corpus)


def read_corpus(entry: Corpus, source: str | Path | None, manifest: str | Path | None) -> list[Utterance]:
    """The corpus's utterances through its reader, or through the given manifest."""
    if source is not None and not Path(source).is_dir():
        raise MissingSourceError(str(source), f"{entry.name} corpus folder")
    if manifest is not None:
        return read_manifest(manifest, source)
    if entry.reader == MANIFEST:
        raise DataError(f"{entry.name} is read through a manifest: pass --manifest FILE "
                        "(CSV or JSONL with columns path,label[,speaker][,split])")
    if source is None:
        raise DataError(f"{entry.name}: pass --source DIR, the corpus folder as downloaded")
    return READERS[entry.reader](source)


def _map_labels(table: LabelTable, name: str, utts: Sequence[Utterance]
                ) -> tuple[list[tuple[Utterance, LabelRule]], Counter, set[str]]:
    """(kept utterances with their rule, dropped-label counts, table labels used); every unknown label of the
    corpus is reported in one UnknownLabelError."""
    kept, dropped, used, unknown = [], Counter(), set(), {}
    for u in utts:
        try:
            rule = table.lookup(name, u.native_label, u.path)
        except UnknownLabelError as e:
            unknown.setdefault(u.native_label, [e, 0])[1] += 1
            continue
        used.add(rule.label)
        if rule.index is None:
            dropped[u.native_label] += 1
        else:
            kept.append((u, rule))
    if unknown:
        (first, _), *rest = unknown.values()
        raise UnknownLabelError(name, first.path, first.label, [r.label for r in table.rules(name)],
                                {e.label: n for e, n in rest})
    if not kept:
        raise DataError(f"{name}: the label table drops every file ({dict(dropped)})")
    return kept, dropped, used


def _fingerprint(name: str, items: Sequence[tuple[Utterance, LabelRule, str]], table_fp: str, method: str,
                 seed: int) -> str:
    """Hash of everything the prepared data depends on: files (path, size, mtime), labels, splits, table, seed."""
    h = hashlib.sha256(f"{FORMAT}\n{name}\n{table_fp}\n{method}\n{seed}\n".encode())
    for u, rule, split in items:
        try:
            st = os.stat(u.path)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        h.update(f"{u.path}\t{u.native_label}\t{u.speaker}\t{split}\t{rule.target}\t{stat}\n".encode())
    return h.hexdigest()


def _decode(path: str) -> tuple[np.ndarray | None, str | None]:
    """(int16 PCM, None) or (None, reason)."""
    try:
        return to_pcm16(load_audio(path)), None
    except AudioError as e:
        return None, e.reason


def _decoded(paths: Sequence[str], workers: int) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Decode in order; in worker processes when asked and there is enough work (forkserver, not fork: forking a
    process that runs JAX's threads can deadlock)."""
    if workers <= 1 or len(paths) < 64:
        yield from map(_decode, paths)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        yield from pool.map(_decode, paths, chunksize=8)


def _summary(name: str, n_skipped: int, n_dropped: int, splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON line printed last."""
    per_split = {k: {"n": s["n"], "speakers": s["n_speakers"], "classes": s["classes"]} for k, s in splits.items()}
    return {"corpus": name, "n_examples": sum(s["n"] for s in splits.values()), "n_skipped": n_skipped,
            "n_dropped": n_dropped, "splits": per_split}


def _write(name: str, tmp: Path, items: Sequence[tuple[Utterance, LabelRule, str]], native: list[str], base: Path,
           on_error: str, workers: int, progress: bool, log: Callable[[str], None]
           ) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Decode and write every split into tmp; returns per-split statistics and the skipped files."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm import tqdm

    native_index = {label: i for i, label in enumerate(native)}
    writers = {s: ArrayRecordWriter(str(tmp / f"{s}.array_record"), _WRITER_OPTIONS) for s in SPLITS}
    index: dict[str, dict[str, list]] = {s: {"num_samples": [], "label": [], "native_index": [], "speaker": []}
                                         for s in SPLITS}
    skipped: list[dict[str, str]] = []
    bar = tqdm(total=len(items), desc=f"prepare {name}", unit="file",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for (u, rule, split), (pcm, reason) in zip(items, _decoded([u.path for u, _, _ in items], workers)):
            bar.update()
            if pcm is None:
                if on_error == "stop":
                    raise AudioError(u.path, reason)
                skipped.append({"path": u.path, "reason": reason})
                log(f"skipped {u.path}: {reason}")
                continue
            header = {"path": os.path.relpath(u.path, base), "native_label": u.native_label,
                      "native_index": native_index[u.native_label], "label": rule.index, "speaker": u.speaker,
                      "n": int(pcm.shape[0])}
            writers[split].write(encode_record(header, pcm))
            for key, value in (("num_samples", pcm.shape[0]), ("label", rule.index),
                               ("native_index", header["native_index"]), ("speaker", u.speaker)):
                index[split][key].append(value)
    finally:
        bar.close()
        for w in writers.values():
            w.close()
    stats = {}
    for s, ix in index.items():
        np.savez(tmp / f"{s}.index.npz", num_samples=np.asarray(ix["num_samples"], np.int64),
                 label=np.asarray(ix["label"], np.int8), native_index=np.asarray(ix["native_index"], np.int32))
        counts, speakers = Counter(ix["label"]), sorted({sp for sp in ix["speaker"] if sp is not None})
        stats[s] = {"n": len(ix["label"]), "n_speakers": len(speakers), "speakers": speakers,
                    "classes": {c: counts.get(i, 0) for i, c in enumerate(CLASSES)},
                    "native": dict(sorted(Counter(native[i] for i in ix["native_index"]).items())),
                    "seconds": round(float(np.sum(ix["num_samples"], dtype=np.int64)) / SAMPLE_RATE, 3)}
    return stats, skipped


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace dest by tmp (two renames; the old copy is removed only after the new one is in place)."""
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def prepare_corpus(corpus: str, source: str | Path | None = None, out: str | Path | None = None, *,
                   manifest: str | Path | None = None, split_method: str | None = None, seed: int = 0,
                   on_error: str = "skip", force: bool = False, label_map: str | Path | None = None,
                   workers: int = 1, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prepare one corpus into {out}/{name}/ and return the summary; a no-op when nothing changed.
    Messages (skipped files, counts) go to log, by default stderr."""
    log = log or _stderr
    if on_error not in ON_ERROR:
        raise DataError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    entry = _resolve(corpus, manifest)
    name, out = entry.name, Path(out) if out is not None else default_data_dir()
    table = load_label_table(label_map)
    kept, dropped, used = _map_labels(table, name, read_corpus(entry, source, manifest))
    method = split_method or entry.split
    method = auto_method([u for u, _ in kept]) if method == "auto" else method
    splits = assign_splits([u for u, _ in kept], method, seed, key=name)
    items = [(u, r, s) for (u, r), s in zip(kept, splits)]
    fingerprint = _fingerprint(name, items, table.fingerprint(name), method, seed)

    dest = out / name
    if not force and (dest / "info.json").is_file():
        info = json.loads((dest / "info.json").read_text())
        if info.get("format") == FORMAT and info.get("fingerprint") == fingerprint:
            log(f"{name}: up to date in {dest} ({info['summary']['n_examples']} examples, "
                f"{info['summary']['n_skipped']} skipped); use --force to rebuild")
            return info["summary"]

    base = Path(source) if source is not None else Path(manifest).parent
    native = sorted({u.native_label for u, _ in kept})
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        stats, skipped = _write(name, tmp, items, native, base, on_error, workers, progress, log)
        if not any(s["n"] for s in stats.values()):
            raise DataError(f"{name}: no usable audio ({len(skipped)} files skipped, e.g. "
                            f"{skipped[0]['path']}: {skipped[0]['reason']})")
        shared = shared_speakers([u for u, _, _ in items], [s for _, _, s in items])
        summary = _summary(name, len(skipped), sum(dropped.values()), stats)
        info = {
            "format": FORMAT, "corpus": name, "title": entry.title, "synthetic": entry.synthetic,
            "sample_rate": SAMPLE_RATE, "source": str(Path(source).resolve()) if source is not None else None,
            "manifest": str(Path(manifest).resolve()) if manifest is not None else None,
            "split_method": method, "seed": seed, "fingerprint": fingerprint,
            "label_table": table.fingerprint(name), "label_section": table.section(name),
            "native_labels": native,
            "label_map": {r.label: {"class": r.target, "meaning": r.meaning} for r in table.rules(name)
                          if r.label in used},
            "speaker_independent": not shared and all(u.speaker is not None for u, _, _ in items),
            "shared_speakers": shared, "dropped": dict(sorted(dropped.items())), "skipped": skipped,
            "splits": stats, "summary": summary,
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
        _swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name}: {summary['n_examples']} examples written to {dest}; {len(skipped)} skipped (bad audio), "
        f"{sum(dropped.values())} dropped by the label table {dict(sorted(dropped.items())) or ''}".rstrip())
    if shared:
        log(f"{name}: warning: split method {method!r} puts {len(shared)} speaker(s) in more than one split "
            f"(e.g. {shared[0]}): not speaker-independent")
    return summary


def _list_corpora() -> str:
    rows = [f"{'name':12} {'group':9} {'reader':9} {'split':8} language"]
    rows += [f"{c.name:12} {c.group:9} {c.reader:9} {c.split:8} {c.language}" for c in CORPORA.values()]
    return "\n".join(rows)


def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point; prints a last line of JSON with the summary."""
    p = argparse.ArgumentParser(prog="python -m exhubert_jax.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="registry name (see --list), or your own name with --manifest")
    p.add_argument("--source", help="the corpus folder as downloaded (with --manifest: base of relative paths)")
    p.add_argument("--manifest", help="CSV/TSV/JSONL with path,label[,speaker][,split]")
    p.add_argument("--out", help="output folder (default: $EXHUBERT_DATA or data/prepared)")
    p.add_argument("--split-method", choices=("own", "speaker", "random", "auto"),
                   help="override the registry's split method")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--on-error", choices=ON_ERROR, default="skip",
                   help="bad audio: skip and count (default), or stop at the first one")
    p.add_argument("--label-map", help="extra mapping rows (CSV: corpus,label,meaning,class,reason)")
    p.add_argument("--workers", type=int, default=1,
                   help="decoding processes (default 1: decoding runs at ~2k files/s already; more helps only "
                        "for large corpora in heavy formats)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the known corpora and exit")
    args = p.parse_args(None if argv is None else list(argv))
    if args.list:
        print(_list_corpora())
        return 0
    if not args.corpus:
        p.error("--corpus is required")
    try:
        summary = prepare_corpus(args.corpus, args.source, args.out, manifest=args.manifest,
                                 split_method=args.split_method, seed=args.seed, on_error=args.on_error,
                                 force=args.force, label_map=args.label_map, workers=args.workers,
                                 progress=not args.no_progress)
    except DataError as e:
        _stderr(f"error: {e}")
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
