"""Writing one corpus as a TFDS dataset {out}/{name}/: built under a temporary folder through its builder, then
swapped in (process.atomic_files), unless an intact copy prepared from the same files, labels and options is already
there. A failure, Ctrl-C or a full disk (one DiskFullError naming the folder) leaves an earlier copy as it was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.dataset import RECORD, check_files, file_sizes, read_record
from exhubert_jax.data.prepare.decoding import decoder
from exhubert_jax.data.prepare.plan import Origin, Plan, label_distributions, metadata, speaker_report
from exhubert_jax.data.sources.corpora import Corpus, base_name
from exhubert_jax.data.sources.labels import LabelRule, LabelTable
from exhubert_jax.data.sources.readers import Utterance
from exhubert_jax.process.atomic_files import atomic_directory
from exhubert_jax.process.output_dirs import sized_output

ON_ERROR = ("skip", "stop")


def say_stderr(msg: str) -> None:
    """Print to stderr without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


@dataclass(frozen=True)
class Options:
    """How a corpus is written: bad-audio policy, rebuild, decoding workers, progress bar, where messages go,
    whether utterances without a majority label are kept for their label distribution."""

    on_error: str = "skip"
    force: bool = False
    workers: int = 1
    progress: bool = True
    log: Callable[[str], None] | None = None
    keep_no_majority: bool = False

    def say(self, msg: str) -> None:
        """One message, to log or stderr."""
        (self.log or say_stderr)(msg)

    def check(self) -> None:
        """A DataError for an unknown bad-audio policy."""
        if self.on_error not in ON_ERROR:
            raise DataError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")


def origin_of(name: str, source: str | Path | None, manifest: str | Path | None, out: Path,
              split_method: str | None, seed: int, label_map: str | Path | None,
              keep_no_majority: bool = False) -> Origin:
    """The Origin of a corpus read from a folder or a manifest."""
    return Origin(Path(source) if source is not None else Path(manifest).parent,
                  _command(name, source, out, manifest, split_method, seed, label_map, keep_no_majority),
                  {"source": str(Path(source).resolve()) if source is not None else None,
                   "manifest": str(Path(manifest).resolve()) if manifest is not None else None})


def _command(name: str, source: str | Path | None, out: Path, manifest: str | Path | None, split_method: str | None,
             seed: int, label_map: str | Path | None, keep_no_majority: bool = False) -> str:
    """The command line that prepares this corpus again with the same options."""
    args = [f"--corpus {shlex.quote(name)}"]
    for flag, value in (("--source", source), ("--manifest", manifest), ("--out", out),
                        ("--split-method", split_method), ("--label-map", label_map)):
        if value is not None:
            args.append(f"{flag} {shlex.quote(str(Path(value).resolve()) if flag != '--split-method' else value)}")
    if seed:
        args.append(f"--seed {seed}")
    if keep_no_majority:
        args.append("--keep-no-majority")
    return "python -m exhubert_jax.data.prepare " + " ".join(args)


INDEX_VERSION = 2  # the per-example index beside the data (2: PCM digests, genders, languages); a change rebuilds


def _fingerprint(name: str, version: str, items: Sequence[tuple[Utterance, LabelRule, str]], table_fp: str,
                 method: str, seed: int) -> str:
    """Hash of everything the prepared data depends on: dataset version, files (path, size, mtime), labels,
    splits, table, seed."""
    h = hashlib.sha256(f"{version}\n{name}\n{table_fp}\n{method}\n{seed}\nindex {INDEX_VERSION}\n".encode())
    for u, rule, split in items:
        try:
            st = os.stat(u.path)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        votes = f"\t{u.votes}" if u.votes is not None else ""
        h.update(f"{u.path}\t{u.native_label}\t{u.speaker}\t{split}\t{rule.target}\t{stat}\t{u.dims}{votes}\t"
                 f"{u.gender}\t{u.language}\n".encode())
    return h.hexdigest()


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


def _build(entry: Corpus, plan: Plan, tmp: Path, manual_dir: Path) -> Path:
    """Write the dataset through its TFDS builder under tmp; returns its version folder."""
    import tensorflow_datasets as tfds

    from exhubert_jax.data.prepare.builders import FILE_FORMAT, builder_class, uncompressed_array_record

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


def write_dataset(entry: Corpus, items: Sequence[tuple[Utterance, LabelRule, str]], dropped: Counter,
                  used: dict[str, LabelRule], table: LabelTable, out: Path, method: str, seed: int, origin: Origin,
                  options: Options) -> dict[str, Any]:
    """Write planned (utterance, rule, split) items as the TFDS dataset {out}/{entry.name}/, unless an intact copy
    with the same fingerprint is there; returns its summary."""
    from exhubert_jax.data.prepare.builders import corpus_version

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
    extra = metadata(entry, version, method, seed, table, items, used, dropped, origin, speakers)
    dists = label_distributions(table, base_name(name), items, extra["native_labels"])
    plan = _write(entry, items, out, fingerprint, extra, origin, options, dists)
    summary = plan.summary()
    log(f"{name}: {summary['n_examples']} examples written to {dest}; {len(plan.skipped)} skipped (bad audio), "
        f"{sum(dropped.values())} dropped by the label table {dict(sorted(dropped.items())) or ''}".rstrip())
    if speakers["shared_speakers"]:
        shared = speakers["shared_speakers"]
        log(f"{name}: warning: split method {method!r} puts {len(shared)} speaker(s) in more than one split "
            f"(e.g. {shared[0]}): not speaker-independent")
    return summary


def _write(entry: Corpus, items: Sequence[tuple[Utterance, LabelRule, str]], out: Path, fingerprint: str,
           extra: dict[str, Any], origin: Origin, options: Options, dists: Sequence[tuple] | None = None) -> Plan:
    """Build the dataset in a temporary folder beside {out}/{name}/ (TFDS's own folders in its .build/, removed
    before the swap) and swap it in; the plan it was built from."""
    from exhubert_jax.data.prepare.builders import tfds_name, version_parts
    from exhubert_jax.process.progress import progress

    name, version = entry.name, extra["version"]
    bar = progress(len(items), f"prepare {name}", "file", quiet=not options.progress)
    try:
        with atomic_directory(out / name) as final:
            build = final / ".build"
            build.mkdir()
            with decoder(options.workers, len(items)) as decode:
                plan = Plan(name, items, extra["native_labels"], origin.base, options.on_error, decode, bar,
                            options.say, sum(extra["dropped"].values()), extra, dists)
                with sized_output(out / name, plan.estimated_bytes):  # a full disk: the bytes of all the audio
                    version_dir = _build(entry, plan, build, origin.base)
            bar.close()
            version_dir.rename(final / version)
            shutil.rmtree(build)
            record = {"corpus": name, "tfds_name": tfds_name(name), "version": version, "fingerprint": fingerprint,
                      "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "version_parts": version_parts(entry), "reader": entry.reader, "command": origin.command,
                      "files": file_sizes(final / version), "summary": plan.summary()}
            (final / RECORD).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    finally:
        bar.close()
    return plan
