"""Prepare a corpus: read, map labels, split, decode to 16 kHz int16, and write it as a TensorFlow Dataset
(array_record files, through the corpus's TFDS builder; see builders.py and dataset.py for the layout).

    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb [--out data/prepared]
    python -m exhubert_jax.data.prepare --corpus mycorpus --manifest files.csv [--source DIR]
    python -m exhubert_jax.data.prepare --emonet /path/to/EmoSet   # every corpus folder in EmoNet's layout
    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb --folds 5   # speaker k-fold
    python -m exhubert_jax.data.prepare --emobox EmoBox/data/emodb --emobox-root /path/to/corpora   # EmoBox's folds
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.cli)
    from exhubert_jax.cli import run_command

    sys.exit(run_command("exhubert_jax.data.prepare"))

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import shlex
import shutil
import signal
import threading
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..cli import command
from ..interrupts import Interrupted
from ..outputs import make_output_dir
from .audio import SAMPLE_RATE, load_audio, to_pcm16
from .corpora import CORPORA, MANIFEST, Corpus, base_name, get_corpus, user_corpus
from .dimensions import SCALES, scale_record
from .dataset import RECORD, check_files, default_data_dir, file_sizes, read_record
from .emonet import find_corpora, is_emonet_folder, read_emonet
from .errors import AudioError, DataError, MissingSourceError, SplitError, UnknownCorpusError, UnknownLabelError
from .labels import CLASSES, GENERIC, LabelRule, LabelTable, load_label_table
from .readers import READERS, SPLITS, Utterance, read_manifest
from .splits import assign_splits, auto_method, parse_kfold, shared_speakers

ON_ERROR = ("skip", "stop")


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


def _fingerprint(name: str, version: str, items: Sequence[tuple[Utterance, LabelRule, str]], table_fp: str,
                 method: str, seed: int) -> str:
    """Hash of everything the prepared data depends on: dataset version, files (path, size, mtime), labels,
    splits, table, seed."""
    h = hashlib.sha256(f"{version}\n{name}\n{table_fp}\n{method}\n{seed}\n".encode())
    for u, rule, split in items:
        try:
            st = os.stat(u.path)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        h.update(f"{u.path}\t{u.native_label}\t{u.speaker}\t{split}\t{rule.target}\t{stat}\t{u.dims}\n".encode())
    return h.hexdigest()


def _decode(path: str) -> tuple[np.ndarray | None, str | None]:
    """(int16 PCM, None) or (None, reason)."""
    try:
        return to_pcm16(load_audio(path)), None
    except AudioError as e:
        return None, e.reason


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is handled once, by the parent (no traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _decoder(workers: int, n: int) -> Iterator[Callable[[Sequence[str]], Iterable]]:
    """A function decoding paths in order; in worker processes when asked and there is enough work (forkserver,
    not fork: forking a process that runs JAX's threads can deadlock). Pending work is cancelled on exit."""
    if workers <= 1 or n < 64:
        yield lambda paths: map(_decode, paths)
        return
    if threading.current_thread() is threading.main_thread():
        # the fork server inherits an ignored SIGINT across exec, and so does every worker it forks: Ctrl-C reaches
        # only this process, even while a worker is still starting
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, before)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_ignore_sigint)
    try:
        yield lambda paths: pool.map(_decode, paths, chunksize=8)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Plan:
    """What a builder writes (see builders.py): the kept utterances with their rule and split, decoded in order;
    collects the skipped files and per-split statistics as it goes."""

    def __init__(self, name: str, items: Sequence[tuple[Utterance, LabelRule, str]], native: list[str], base: Path,
                 on_error: str, decode: Callable[[Sequence[str]], Iterable], bar: Any, log: Callable[[str], None],
                 n_dropped: int, extra: dict[str, Any]):
        self.name, self.items, self.native, self.base = name, items, native, base
        self.on_error, self.decode, self.bar, self.log = on_error, decode, bar, log
        self.n_dropped, self.extra = n_dropped, extra
        self._native_index = {label: i for i, label in enumerate(native)}
        self.skipped: list[dict[str, str]] = []
        self.has_dims = any(u.dims is not None for u, _, _ in items)  # arousal, valence, dominance on [0, 1]
        self.index = {s: {"num_samples": [], "label": [], "native_index": [], **({"dims": []} if self.has_dims else {})}
                      for s in SPLITS}
        self.speakers: dict[str, list[str | None]] = {s: [] for s in SPLITS}
        self.error: DataError | None = None

    def counts(self) -> Counter:
        """Planned examples per split."""
        return Counter(s for _, _, s in self.items)

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(key, example) of one split, bad audio skipped (or stopping, per on_error)."""
        mine = [(k, u, rule) for k, (u, rule, s) in enumerate(self.items) if s == split]
        written = 0
        for (key, u, rule), (pcm, reason) in zip(mine, self.decode([u.path for _, u, _ in mine])):
            self.bar.update()
            if pcm is None:
                if self.on_error == "stop":
                    self.error = AudioError(u.path, reason)
                    raise self.error
                self.skipped.append({"path": u.path, "reason": reason})
                self.log(f"skipped {u.path}: {reason}")
                continue
            native = self._native_index[u.native_label]
            for field, value in (("num_samples", int(pcm.shape[0])), ("label", rule.index), ("native_index", native)):
                self.index[split][field].append(value)
            if self.has_dims:
                self.index[split]["dims"].append(list(u.dims) if u.dims is not None else [None] * 3)
            self.speakers[split].append(u.speaker)
            written += 1
            yield key, {"audio": pcm, "label": rule.index, "native_label": native, "speaker": u.speaker or "",
                        "utterance_id": os.path.relpath(u.path, self.base), "duration": pcm.shape[0] / SAMPLE_RATE}
        if not written:
            self.error = DataError(f"{self.name}: no usable audio in split {split} ({len(mine)} files skipped, e.g. "
                                   f"{self.skipped[-1]['path']}: {self.skipped[-1]['reason']})")
            raise self.error

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-split statistics of what was written."""
        out = {}
        for s, ix in self.index.items():
            counts, speakers = Counter(ix["label"]), sorted({sp for sp in self.speakers[s] if sp is not None})
            out[s] = {"n": len(ix["label"]), "n_speakers": len(speakers), "speakers": speakers,
                      "classes": {c: counts.get(i, 0) for i, c in enumerate(CLASSES)},
                      "native": dict(sorted(Counter(self.native[i] for i in ix["native_index"]).items())),
                      "seconds": round(float(np.sum(ix["num_samples"], dtype=np.int64)) / SAMPLE_RATE, 3)}
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON line printed last; speaker counts and speaker independence are None when speakers are unknown."""
        splits = self.stats()
        independent = self.extra["speaker_independent"]
        known = independent is not None
        per_split = {k: {"n": s["n"], "speakers": s["n_speakers"] if known else None, "classes": s["classes"]}
                     for k, s in splits.items()}
        return {"corpus": self.name, "n_examples": sum(s["n"] for s in splits.values()),
                "n_skipped": len(self.skipped), "n_dropped": self.n_dropped,
                "split_method": self.extra["split_method"], "speaker_independent": independent,
                "test_speakers_disjoint": self.extra["test_speakers_disjoint"],
                **{k: self.extra[k] for k in ("fold", "validation") if k in self.extra}, "splits": per_split}

    def report(self) -> dict[str, Any]:
        """The metadata stored with the dataset (metadata.json): the prepare options, what was written, skipped
        and dropped, and the per-example lengths and labels (so batching needs no pass over the audio)."""
        return {**self.extra, "skipped": self.skipped, "splits": self.stats(), "summary": self.summary(),
                "index": {s: ix for s, ix in self.index.items() if ix["label"]}}


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace dest by tmp (two renames; the old copy is removed only after the new one is in place)."""
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _command(name: str, source: str | Path | None, out: Path, manifest: str | Path | None, split_method: str | None,
             seed: int, label_map: str | Path | None) -> str:
    """The command line that prepares this corpus again with the same options."""
    args = [f"--corpus {shlex.quote(name)}"]
    for flag, value in (("--source", source), ("--manifest", manifest), ("--out", out),
                        ("--split-method", split_method), ("--label-map", label_map)):
        if value is not None:
            args.append(f"{flag} {shlex.quote(str(Path(value).resolve()) if flag != '--split-method' else value)}")
    if seed:
        args.append(f"--seed {seed}")
    return "python -m exhubert_jax.data.prepare " + " ".join(args)


@contextlib.contextmanager
def _tfds_quiet() -> Iterator[None]:
    """No TFDS progress bars while we build (ours shows progress); the previous setting is restored."""
    from tensorflow_datasets.core.utils import tqdm_utils

    before = getattr(tqdm_utils, "_active", True)
    tqdm_utils.display_progress_bar(False)
    try:
        yield
    finally:
        tqdm_utils.display_progress_bar(before)


def _build(entry: Corpus, plan: _Plan, tmp: Path, manual_dir: Path) -> Path:
    """Write the dataset through its TFDS builder under tmp; returns its version folder."""
    import tensorflow_datasets as tfds

    from .builders import FILE_FORMAT, builder_class, uncompressed_array_record

    builder = builder_class(entry)(data_dir=str(tmp / "tfds"), plan=plan, file_format=FILE_FORMAT)
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir),
                                          compute_stats=tfds.download.ComputeStatsMode.SKIP)
    with _tfds_quiet(), uncompressed_array_record():
        try:
            builder.download_and_prepare(download_dir=str(tmp / "downloads"), download_config=config)
        except Exception:
            if plan.error is not None:  # ours, raised inside the generator: re-raise it as it was
                raise plan.error from None
            raise
    return Path(builder.data_dir)


@dataclass(frozen=True)
class Options:
    """How a corpus is written: bad-audio policy, rebuild, decoding workers, progress bar, where messages go."""

    on_error: str = "skip"
    force: bool = False
    workers: int = 1
    progress: bool = True
    log: Callable[[str], None] | None = None

    def say(self, msg: str) -> None:
        """One message, to log or stderr."""
        (self.log or _stderr)(msg)

    def check(self) -> None:
        """A DataError for an unknown bad-audio policy."""
        if self.on_error not in ON_ERROR:
            raise DataError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")


@dataclass(frozen=True)
class Origin:
    """Where a prepared dataset came from: the folder utterance ids are relative to, the metadata that records the
    source, and the command that prepares it again."""

    base: Path
    command: str
    meta: dict[str, Any]


def origin_of(name: str, source: str | Path | None, manifest: str | Path | None, out: Path,
              split_method: str | None, seed: int, label_map: str | Path | None) -> Origin:
    """The Origin of a corpus read from a folder or a manifest."""
    return Origin(Path(source) if source is not None else Path(manifest).parent,
                  _command(name, source, out, manifest, split_method, seed, label_map),
                  {"source": str(Path(source).resolve()) if source is not None else None,
                   "manifest": str(Path(manifest).resolve()) if manifest is not None else None})


def read_mapped(entry: Corpus, source: str | Path | None, manifest: str | Path | None, table: LabelTable
                ) -> tuple[list[tuple[Utterance, LabelRule]], Counter, dict[str, LabelRule]]:
    """The corpus's utterances with their label rules (see _map_labels)."""
    return _map_labels(table, entry.name, read_corpus(entry, source, manifest))


def speaker_report(items: Sequence[tuple[Utterance, LabelRule, str]]) -> dict[str, Any]:
    """Speaker independence over the utterances whose speaker is known: speakers in more than one split, and
    whether the test speakers are disjoint from the train and validation speakers (None: no speaker known)."""
    known = [(u, s) for u, _, s in items if u.speaker is not None]
    shared = shared_speakers([u for u, _ in known], [s for _, s in known])
    test = {u.speaker for u, s in known if s == "test"}
    rest = {u.speaker for u, s in known if s != "test"}
    return {"speaker_independent": (not shared) if known else None, "shared_speakers": shared,
            "test_speakers_disjoint": not (test & rest) if known else None,
            "speakers_known": f"{len(known)} of {len(items)}"}


def prepare_corpus(corpus: str, source: str | Path | None = None, out: str | Path | None = None, *,
                   manifest: str | Path | None = None, split_method: str | None = None, seed: int = 0,
                   on_error: str = "skip", force: bool = False, label_map: str | Path | None = None,
                   workers: int = 1, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prepare one corpus into {out}/{name}/ (a TFDS dataset, see dataset.py) and return the summary; a no-op
    when nothing changed and its files are intact. Messages (skipped files, counts) go to log, by default
    stderr. A k-fold split method (kfold:K) is prepared by folds.prepare_folds, one dataset per fold."""
    options = Options(on_error, force, workers, progress, log)
    options.check()
    entry = _resolve(corpus, source, manifest)
    out = Path(out) if out is not None else default_data_dir()
    table = load_label_table(label_map)
    kept, dropped, used = read_mapped(entry, source, manifest, table)
    method = split_method or ("own" if _emonet(source, manifest) else entry.split)
    method = auto_method([u for u, _ in kept]) if method == "auto" else method
    if parse_kfold(method):
        raise SplitError(f"split method {method!r} makes one dataset per fold: use --folds K "
                         "(exhubert_jax.data.folds.prepare_folds)")
    splits = assign_splits([u for u, _ in kept], method, seed, key=entry.name)
    items = [(u, r, s) for (u, r), s in zip(kept, splits)]
    origin = origin_of(entry.name, source, manifest, out, split_method, seed, label_map)
    summary = write_dataset(entry, items, dropped, used, table, out, method, seed, origin, options)
    if summary.get("speaker_independent") is None:
        why = "EmoNet layout" if _emonet(source, manifest) else "not given"
        options.say(f"{entry.name}: speakers are unknown ({why}): split method {method!r}; whether the split is "
                    "speaker-independent cannot be checked")
    return summary


def write_dataset(entry: Corpus, items: Sequence[tuple[Utterance, LabelRule, str]], dropped: Counter,
                  used: dict[str, LabelRule], table: LabelTable, out: Path, method: str, seed: int, origin: Origin,
                  options: Options) -> dict[str, Any]:
    """Write planned (utterance, rule, split) items as the TFDS dataset {out}/{entry.name}/, unless an intact copy
    with the same fingerprint is there; returns its summary."""
    from .builders import corpus_version

    name, log = entry.name, options.say
    version = corpus_version(entry)
    fingerprint = _fingerprint(name, version, items, table.fingerprint(base_name(name)), method, seed)
    dest = out / name
    record = read_record(dest)
    if not options.force and record is not None and record.get("fingerprint") == fingerprint:
        problem = check_files(dest, record)
        if problem is None:
            summary = record["summary"]
            log(f"{name}: up to date in {dest} ({summary['n_examples']} examples, {summary['n_skipped']} "
                "skipped); use --force to rebuild")
            return summary
        log(f"{name}: {problem}; rebuilding")
    speakers = speaker_report(items)
    extra = _metadata(entry, version, method, seed, table, items, used, dropped, origin, speakers)
    plan = _write(entry, items, out, fingerprint, extra, origin, options)
    summary = plan.summary()
    log(f"{name}: {summary['n_examples']} examples written to {dest}; {len(plan.skipped)} skipped (bad audio), "
        f"{sum(dropped.values())} dropped by the label table {dict(sorted(dropped.items())) or ''}".rstrip())
    if speakers["shared_speakers"]:
        shared = speakers["shared_speakers"]
        log(f"{name}: warning: split method {method!r} puts {len(shared)} speaker(s) in more than one split "
            f"(e.g. {shared[0]}): not speaker-independent")
    return summary


def dimension_record(reader: str, items: Sequence[tuple[Utterance, LabelRule, str]]) -> dict[str, Any] | None:
    """The corpus's dimensional labels in metadata.json: names, the rating scale its reader read, how many
    utterances have them (None when none has)."""
    n_with = sum(u.dims is not None for u, _, _ in items)
    if not n_with:
        return None
    return scale_record(SCALES.get(reader, SCALES[MANIFEST]), n_with)


def _metadata(entry: Corpus, version: str, method: str, seed: int, table: LabelTable,
              items: Sequence[tuple[Utterance, LabelRule, str]], used: dict[str, LabelRule], dropped: Counter,
              origin: Origin, speakers: dict[str, Any]) -> dict[str, Any]:
    """The options and provenance stored in metadata.json."""
    from .builders import tfds_name

    section = base_name(entry.name)
    return {
        "corpus": entry.name, "base_corpus": section, "reader": entry.reader, "tfds_name": tfds_name(entry.name),
        "version": version, "title": entry.title, "synthetic": entry.synthetic, "sample_rate": SAMPLE_RATE,
        "source": None, "manifest": None, **origin.meta, "split_method": method, "seed": seed,
        "label_table": table.fingerprint(section), "label_section": table.section(section),
        "native_labels": sorted({u.native_label for u, _, _ in items}),
        "dimensions": dimension_record(MANIFEST if origin.meta.get("manifest") else entry.reader, items),
        "label_map": {r.label: {"class": r.target, "meaning": r.meaning, "section": r.corpus}
                      for _, r in sorted(used.items())},
        **speakers, "dropped": dict(sorted(dropped.items())), "command": origin.command,
    }


def _write(entry: Corpus, items: Sequence[tuple[Utterance, LabelRule, str]], out: Path, fingerprint: str,
           extra: dict[str, Any], origin: Origin, options: Options) -> _Plan:
    """Build the dataset under a temporary folder and swap it in as {out}/{name}/; the plan it was built from."""
    from tqdm import tqdm

    from .builders import tfds_name, version_parts

    name, version = entry.name, extra["version"]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    bar = tqdm(total=len(items), desc=f"prepare {name}", unit="file", disable=not options.progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        with _decoder(options.workers, len(items)) as decode:
            plan = _Plan(name, items, extra["native_labels"], origin.base, options.on_error, decode, bar,
                         options.say, sum(extra["dropped"].values()), extra)
            version_dir = _build(entry, plan, tmp, origin.base)
        bar.close()
        final = tmp / "final"
        final.mkdir()
        version_dir.rename(final / version)
        record = {"corpus": name, "tfds_name": tfds_name(name), "version": version, "fingerprint": fingerprint,
                  "version_parts": version_parts(entry), "reader": entry.reader, "command": origin.command,
                  "files": file_sizes(final / version), "summary": plan.summary()}
        (final / RECORD).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        _swap_in(final, out / name)
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return plan


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


def _prepare_emobox(directory: str, root: str, options: dict[str, Any]) -> int:
    """Prepare the folds of every EmoBox corpus folder in DIR, printing one JSON summary line per fold; a corpus
    that fails is reported and the others still run (exit status 2 if any failed)."""
    from .emobox import check_root, corpus_folders
    from .folds import prepare_emobox_corpus

    check_root(root)
    folders, failed = corpus_folders(directory), []
    for folder in folders:
        try:
            for summary in prepare_emobox_corpus(folder, root, **options):
                print(json.dumps(summary), flush=True)
        except DataError as e:
            _stderr(f"error: {e}")
            failed.append(str(folder))
    if len(folders) > 1 and failed:
        _stderr(f"error: {len(failed)} EmoBox corpus folder(s) not prepared: {', '.join(failed)}")
    return 2 if failed else 0


def _arguments() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m exhubert_jax.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="registry name (see --list), or your own name with --manifest")
    p.add_argument("--source", help="the corpus folder as downloaded (with --manifest: base of relative paths)")
    p.add_argument("--manifest", help="CSV/TSV/JSONL with path,label[,speaker][,split]")
    p.add_argument("--emonet", metavar="DIR",
                   help="prepare every corpus folder in DIR that is in EmoNet's layout (train.csv, devel.csv, "
                        "test.csv with file,label); folder names may be EmoNet's (e.g. AngerDetection)")
    p.add_argument("--emobox", metavar="DIR",
                   help="prepare EmoBox's folds: DIR is one corpus folder of EmoBox's data/ (<name>.jsonl, "
                        "fold_N/) or data/ itself; one dataset per fold, NAME-emobox-foldN")
    p.add_argument("--emobox-root", metavar="DIR", help="--emobox: the folder EmoBox's wav paths are relative to")
    p.add_argument("--out", help="output folder (default: $EXHUBERT_DATA or data/prepared)")
    p.add_argument("--split-method", metavar="METHOD",
                   help="override the registry's split method: own, speaker, random, auto, or kfold:K")
    p.add_argument("--folds", type=int, metavar="K",
                   help="speaker-independent K-fold: one dataset per fold, NAME-fold1ofK .. NAME-foldKofK "
                        "(the same as --split-method kfold:K)")
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
    return p


def _folds_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> int | None:
    """K from --folds or --split-method kfold:K (None for a one-split method)."""
    try:
        k = parse_kfold(args.split_method or "")
    except SplitError as e:
        p.error(f"--split-method: {e}")
    if args.folds is not None and (args.folds < 2 or (k is not None and k != args.folds)):
        p.error(f"--folds {args.folds}: give K >= 2, and the same K as --split-method")
    if args.split_method and k is None and args.split_method not in ("own", "speaker", "random", "auto"):
        p.error(f"--split-method {args.split_method}: use own, speaker, random, auto or kfold:K")
    return args.folds or k


def _run(p: argparse.ArgumentParser, args: argparse.Namespace, options: dict[str, Any]) -> Any:
    """What the command line asks for; the summary (or summaries) to print, or the exit status of --emobox."""
    from .folds import prepare_folds

    k = _folds_of(p, args)
    if args.emobox:
        if args.corpus or args.source or args.manifest or k or not args.emobox_root:
            p.error("--emobox DIR takes --emobox-root DIR (and no --corpus, --source, --manifest or --folds)")
        options.pop("split_method")
        return _prepare_emobox(args.emobox, args.emobox_root, options)
    if not args.corpus:
        p.error("--corpus (or --emonet DIR, or --emobox DIR) is required")
    if k:
        options.pop("split_method")
        return prepare_folds(args.corpus, k, args.source, manifest=args.manifest, **options)
    return prepare_corpus(args.corpus, args.source, manifest=args.manifest, **options)


@command
def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point; prints a last line of JSON with the summary (one line per fold for folds)."""
    p = _arguments()
    args = p.parse_args(None if argv is None else list(argv))
    if args.list:
        print(_list_corpora())
        return 0
    if args.workers < 1:
        p.error(f"--workers must be at least 1 (decoding processes), got {args.workers}")
    options = dict(out=args.out, split_method=args.split_method, seed=args.seed, on_error=args.on_error,
                   force=args.force, label_map=args.label_map, workers=args.workers, progress=not args.no_progress)
    if args.emonet and (args.corpus or args.source or args.manifest):
        p.error("--emonet DIR prepares every corpus folder in DIR; for one, use --corpus NAME --source DIR/NAME")
    make_output_dir(args.out or default_data_dir(), "--out")
    try:
        result = _prepare_emonet(args.emonet, options) if args.emonet else _run(p, args, options)
    except KeyboardInterrupt:
        what = ("the corpus being prepared was not written; corpora already prepared are kept" if args.emonet else
                f"{args.corpus or args.emobox} was not prepared")
        raise Interrupted(f"{what} (a previous copy, if any, is unchanged)") from None
    if isinstance(result, int):
        return result
    for summary in result if isinstance(result, list) else [result]:
        print(json.dumps(summary), flush=True)
    return 0


