"""Prepare a corpus: read, map labels, split, decode to 16 kHz int16, write array_record files + info.json.

    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb [--out data/prepared]
    python -m exhubert_jax.data.prepare --corpus mycorpus --manifest files.csv [--source DIR]
    python -m exhubert_jax.data.prepare --emonet /path/to/EmoSet   # every corpus folder in EmoNet's layout
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
from .emonet import find_corpora, is_emonet_folder, read_emonet
from .errors import AudioError, DataError, MissingSourceError, UnknownCorpusError, UnknownLabelError
from .labels import CLASSES, GENERIC, LabelRule, LabelTable, load_label_table
from .readers import READERS, SPLITS, Utterance, read_manifest
from .splits import assign_splits, auto_method, shared_speakers

ON_ERROR = ("skip", "stop")
_WRITER_OPTIONS = "group_size:1,uncompressed"


def _stderr(msg: str) -> None:
    """Print to stderr without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _emonet(source: str | Path | None, manifest: str | Path | None) -> bool:
    """True when the source folder is in EmoNet's layout (and no manifest overrides it)."""
    return manifest is None and source is not None and Path(source).is_dir() and is_emonet_folder(source)


def _resolve(corpus: str, source: str | Path | None, manifest: str | Path | None) -> Corpus:
    """Registry entry (or alias); with a manifest or an EmoNet-layout source, an unknown name becomes a user
    corpus."""
    try:
        return get_corpus(corpus)
    except UnknownCorpusError:
        if manifest is None and not _emonet(source, manifest):
            raise
        return user_corpus(corpus)


def read_corpus(entry: Corpus, source: str | Path | None, manifest: str | Path | None) -> list[Utterance]:
    """The corpus's utterances through the given manifest, EmoNet's list files in source, or its reader."""
    if source is not None and not Path(source).is_dir():
        raise MissingSourceError(str(source), f"{entry.name} corpus folder")
    if manifest is not None:
        return read_manifest(manifest, source)
    if _emonet(source, manifest):
        return read_emonet(source)
    if entry.reader == MANIFEST:
        raise DataError(f"{entry.name} is read through a manifest: pass --manifest FILE "
                        "(CSV or JSONL with columns path,label[,speaker][,split]), or --source DIR in EmoNet's "
                        "layout (train.csv, devel.csv, test.csv with file,label)")
    if source is None:
        raise DataError(f"{entry.name}: pass --source DIR, the corpus folder as downloaded")
    return READERS[entry.reader](source)


def _map_labels(table: LabelTable, name: str, utts: Sequence[Utterance]
                ) -> tuple[list[tuple[Utterance, LabelRule]], Counter, dict[str, LabelRule]]:
    """(kept utterances with their rule, dropped-label counts, table rows used by label); every unknown label of
    the corpus is reported in one UnknownLabelError, naming where the first one was read (list file and row, or
    audio file)."""
    kept, dropped, used, unknown = [], Counter(), {}, {}
    for u in utts:
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


def _summary(name: str, n_skipped: int, n_dropped: int, splits: dict[str, dict[str, Any]], method: str,
             independent: bool | None) -> dict[str, Any]:
    """The JSON line printed last; speaker counts and speaker independence are None when speakers are unknown."""
    known = independent is not None
    per_split = {k: {"n": s["n"], "speakers": s["n_speakers"] if known else None, "classes": s["classes"]}
                 for k, s in splits.items()}
    return {"corpus": name, "n_examples": sum(s["n"] for s in splits.values()), "n_skipped": n_skipped,
            "n_dropped": n_dropped, "split_method": method, "speaker_independent": independent,
            "splits": per_split}


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
    entry = _resolve(corpus, source, manifest)
    name, out = entry.name, Path(out) if out is not None else default_data_dir()
    table = load_label_table(label_map)
    kept, dropped, used = _map_labels(table, name, read_corpus(entry, source, manifest))
    method = split_method or ("own" if _emonet(source, manifest) else entry.split)
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
        independent = not shared if all(u.speaker is not None for u, _, _ in items) else None
        summary = _summary(name, len(skipped), sum(dropped.values()), stats, method, independent)
        info = {
            "format": FORMAT, "corpus": name, "title": entry.title, "synthetic": entry.synthetic,
            "sample_rate": SAMPLE_RATE, "source": str(Path(source).resolve()) if source is not None else None,
            "manifest": str(Path(manifest).resolve()) if manifest is not None else None,
            "split_method": method, "seed": seed, "fingerprint": fingerprint,
            "label_table": table.fingerprint(name), "label_section": table.section(name),
            "native_labels": native,
            "label_map": {r.label: {"class": r.target, "meaning": r.meaning, "section": r.corpus}
                          for _, r in sorted(used.items())},
            "speaker_independent": independent,
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
    if independent is None:
        log(f"{name}: speakers are unknown ({'EmoNet layout' if _emonet(source, manifest) else 'not given'}): "
            f"split method {method!r}; whether the split is speaker-independent cannot be checked")
    return summary


def _n_labels(table: LabelTable, name: str) -> str:
    """How many native labels the table maps to a class for a corpus ('generic' without a section of its own)."""
    if table.section(name) == GENERIC:
        return "generic"
    return str(sum(r.index is not None for r in table.rules(name)))


def _list_corpora() -> str:
    """The registry as a table: name, group, reader, split, native labels mapped, language, licence / access."""
    table = load_label_table()
    head = ("name", "group", "reader", "split", "labels", "language", "licence / access")
    rows = [head] + [(c.name, c.group, c.reader, c.split, _n_labels(table, c.name), c.language, c.licence)
                     for c in CORPORA.values()]
    width = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(" ".join(f"{v:{w}}" for v, w in zip(r, width)) + " " + r[-1] for r in rows)


def _prepare_emonet(root: str, options: dict[str, Any]) -> int:
    """Prepare every corpus folder under an EmoNet root, printing one JSON summary line per corpus; a folder that
    fails is reported by name and the others still run (exit status 2 if any failed)."""
    found, problems = find_corpora(root)
    for _, problem in problems:
        _stderr(f"error: {problem}")
    failed = [str(d) for folders, _ in problems for d in folders]
    for folder, entry in found:
        try:
            print(json.dumps(prepare_corpus(entry.name, folder, **options)), flush=True)
        except DataError as e:
            _stderr(f"error: {e}")
            failed.append(str(folder))
    if failed:
        _stderr(f"error: {len(failed)} corpus folder(s) not prepared: {', '.join(failed)}")
    return 2 if failed else 0


def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point; prints a last line of JSON with the summary."""
    p = argparse.ArgumentParser(prog="python -m exhubert_jax.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="registry name (see --list), or your own name with --manifest")
    p.add_argument("--source", help="the corpus folder as downloaded (with --manifest: base of relative paths)")
    p.add_argument("--manifest", help="CSV/TSV/JSONL with path,label[,speaker][,split]")
    p.add_argument("--emonet", metavar="DIR",
                   help="prepare every corpus folder in DIR that is in EmoNet's layout (train.csv, devel.csv, "
                        "test.csv with file,label); folder names may be EmoNet's (e.g. AngerDetection)")
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
    options = dict(out=args.out, split_method=args.split_method, seed=args.seed, on_error=args.on_error,
                   force=args.force, label_map=args.label_map, workers=args.workers, progress=not args.no_progress)
    if args.emonet:
        if args.corpus or args.source or args.manifest:
            p.error("--emonet DIR prepares every corpus folder in DIR; for one, use --corpus NAME --source DIR/NAME")
        try:
            return _prepare_emonet(args.emonet, options)
        except DataError as e:
            _stderr(f"error: {e}")
            return 2
    if not args.corpus:
        p.error("--corpus (or --emonet DIR) is required")
    try:
        summary = prepare_corpus(args.corpus, args.source, manifest=args.manifest, **options)
    except DataError as e:
        _stderr(f"error: {e}")
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
