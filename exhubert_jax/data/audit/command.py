"""The leakage audit of prepared corpora: exact duplicates (PCM digests), near-duplicates that survive resampling,
gain, trimming and lossy coding (landmark fingerprints), where they sit (within a split, across the splits of one
corpus, across corpora, validation or test files in training data), speaker overlap between splits against each
corpus's recorded claim, and per-split statistics with plots.

    python -m exhubert_jax.data.audit [--data-dir DIR] [--corpus a,b] [--out DIR] [--json] [--strict]

Writes OUT/report.md, OUT/audit.json and OUT/*.png (OUT defaults to DATA_DIR/audit) and prints one summary line;
--json prints the JSON document instead. Exit status 0, or 1 with --strict when a test file's audio is in training
data (within a corpus or across corpora).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.data.audit.command"))

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable

from exhubert_jax.data.audit.exact import exact_groups, group_pairs
from exhubert_jax.data.audit.fingerprints import FRAME_SECONDS
from exhubert_jax.data.audit.near import MIN_FRACTION, MIN_MATCHES, near_duplicates
from exhubert_jax.data.audit.pairs import pair_record
from exhubert_jax.data.audit.report import summary, summary_line, write_report
from exhubert_jax.data.audit.scan import SplitScan, analyse, scan_split
from exhubert_jax.data.audit.speakers import speaker_overlap
from exhubert_jax.data.audit.stats import split_stats
from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.dataset import PreparedCorpus, default_data_dir, open_prepared
from exhubert_jax.data.loading.resolve import resolve_corpora
from exhubert_jax.data.prepare.decoding import worker_map
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import AT_LEAST_1, Check, command_parser, option, parse
from exhubert_jax.process.progress import progress

FRACTION = Check(lambda v: 0.0 < v <= 1.0, "must be a fraction in (0, 1]")


@dataclasses.dataclass
class AuditOptions:
    """The command's options (a --config file's keys are these names)."""

    data_dir: str | None = option(None, help="where the corpora are prepared (default: $EXHUBERT_DATA or "
                                              "data/prepared)")
    corpus: str | None = option(None, metavar="A,B", help="the corpora to audit: names or groups (all, emoset, "
                                                           "unseen, demo); default all prepared")
    out: str | None = option(None, metavar="DIR", help="report folder (default DATA_DIR/audit), replaced at once")
    json: bool = option(False, action="store_true", help="print the JSON document on stdout, and nothing else")
    strict: bool = option(False, action="store_true",
                          help="exit 1 when a test file's audio is in training data (within a corpus or across "
                               "corpora)")
    min_fraction: float = option(MIN_FRACTION, type=float, check=FRACTION,
                                 help=f"a near-duplicate shares at least this fraction of the smaller file's "
                                      f"indexed landmark hashes (those not common to many files) at one offset "
                                      f"(default {MIN_FRACTION}; and at least {MIN_MATCHES} hashes)")
    workers: int = option(1, type=int, check=AT_LEAST_1, help="processes that fingerprint the audio (default 1)")
    no_progress: bool = option(False, action="store_true", help="no progress display")


def open_all(names: Iterable[str], data_dir: Path) -> dict[str, PreparedCorpus]:
    """{name: PreparedCorpus} of the corpora to audit."""
    return {n: open_prepared(n, data_dir) for n in names}


def scan_all(corpora: dict[str, PreparedCorpus], workers: int, show: bool) -> list[SplitScan]:
    """Every split of every corpus, read once."""
    splits = [c.split(s) for c in corpora.values() for s in c.splits]
    total = sum(len(s) for s in splits)
    bar = progress(total, "audit", "file", quiet=not show)
    try:
        with worker_map(analyse, workers, total, chunksize=1) as run:
            scans = [scan_split(split, run, bar.update) for split in splits]
    finally:
        bar.close()
    return scans


def duplicate_pairs(scans: list[SplitScan], min_fraction: float) -> tuple[list[dict], list[dict], int]:
    """(exact pairs, near pairs, pairs between folds of one corpus) as the report lists them."""
    keys = [(i, j) for i, s in enumerate(scans) for j in range(len(s))]
    digest = {k: scans[k[0]].digests[k[1]] for k in keys}
    exact = [pair_record(scans, a, b, "exact") for g in exact_groups((k, digest[k]) for k in keys)
             for a, b in group_pairs(g)]
    prints = [scans[i].prints[j] for i, j in keys]
    near = [pair_record(scans, keys[m.a], keys[m.b], "near", matches=m.matches, fraction=m.fraction,
                        offset_s=round(m.offset_frames * FRAME_SECONDS, 3))
            for m in near_duplicates(prints, min_fraction) if digest[keys[m.a]] != digest[keys[m.b]]]
    folds = sum(p is None for p in exact + near)
    return [p for p in exact if p], [p for p in near if p], folds


def audit(corpora: dict[str, PreparedCorpus], data_dir: Path, min_fraction: float = MIN_FRACTION,
          workers: int = 1, show: bool = False) -> tuple[dict[str, Any], list[SplitScan]]:
    """The audit's JSON document and the scanned splits (for the plots); show: a progress display."""
    scans = scan_all(corpora, workers, show)
    exact, near, folds = duplicate_pairs(scans, min_fraction)
    by_corpus: dict[str, dict[str, SplitScan]] = {}
    for s in scans:
        by_corpus.setdefault(s.corpus, {})[s.split] = s
    doc = {"data_dir": str(data_dir), "corpora": list(corpora), "utterances": sum(len(s) for s in scans),
           "settings": {"min_fraction": min_fraction, "min_matches": MIN_MATCHES},
           "digests": {c: "recorded" if all(s.digests_recorded for s in v.values()) else "computed (not in the index)"
                       for c, v in by_corpus.items()},
           "exact": exact, "near": near, "fold_pairs": folds,
           "speakers": {c: speaker_overlap(v, corpora[c].record.get("summary") or {}) for c, v in by_corpus.items()},
           "stats": {f"{s.corpus}/{s.split}": split_stats(s) for s in scans}}
    doc["summary"] = summary(doc)
    return doc, scans


@command
def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point: write the report, print its summary line (or the JSON); 1 under --strict when a
    test file is in training data."""
    p = command_parser(__doc__, AuditOptions, prog="python -m exhubert_jax.data.audit")
    args = parse(p, None if argv is None else list(argv), AuditOptions)
    data_dir = Path(args.data_dir) if args.data_dir is not None else default_data_dir()
    names = resolve_corpora(args.corpus or "all", data_dir)
    corpora = open_all(names, data_dir)
    if not corpora:
        raise DataError(f"no prepared corpora under {data_dir}")
    doc, scans = audit(corpora, data_dir, args.min_fraction, args.workers, not args.no_progress and not args.json)
    out = Path(args.out) if args.out else data_dir / "audit"
    write_report(doc, scans, out)
    print(json.dumps(doc) if args.json else summary_line(doc, out), flush=True)
    return 1 if args.strict and doc["summary"]["test_into_train"] else 0
