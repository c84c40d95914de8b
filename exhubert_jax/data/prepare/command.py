"""The command that prepares corpora: read, map labels, split, decode to 16 kHz int16, and write it as a TensorFlow Dataset
(array_record files, through the corpus's TFDS builder; see builders.py and dataset.py for the layout).

    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb [--out data/prepared]
    python -m exhubert_jax.data.prepare --corpus mycorpus --manifest files.csv [--source DIR]
    python -m exhubert_jax.data.prepare --emonet /path/to/EmoSet   # every corpus folder in EmoNet's layout
    python -m exhubert_jax.data.prepare --corpus emodb --source /path/to/emodb --folds 5   # speaker k-fold
    python -m exhubert_jax.data.prepare --emobox EmoBox/data/emodb --emobox-root /path/to/corpora   # EmoBox's folds
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.data.prepare.command"))

import argparse
import dataclasses
import json
from typing import Any, Iterable

from exhubert_jax.data.errors import SplitError
from exhubert_jax.data.loading.dataset import default_data_dir
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.prepare.many import prepare_emobox_folders, prepare_emonet_root
from exhubert_jax.data.prepare.splits import parse_kfold
from exhubert_jax.data.prepare.write import ON_ERROR
from exhubert_jax.data.sources.corpora import CORPORA
from exhubert_jax.data.sources.labels import GENERIC, LabelTable, load_label_table
from exhubert_jax.process.commands import command
from exhubert_jax.process.interrupts import Interrupted
from exhubert_jax.process.options import command_parser, option, parse
from exhubert_jax.process.output_dirs import make_output_dir


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


@dataclasses.dataclass
class PrepareOptions:
    """The command's options (a --config file's keys are these names)."""

    corpus: str | None = option(None, help="registry name (see --list), or your own name with --manifest")
    source: str | None = option(None, help="the corpus folder as downloaded (with --manifest: base of relative paths)")
    manifest: str | None = option(None, help="CSV/TSV/JSONL with path,label[,speaker][,split][,gender][,language]")
    emonet: str | None = option(None, metavar="DIR",
                                help="prepare every corpus folder in DIR that is in EmoNet's layout (train.csv, "
                                     "devel.csv, test.csv with file,label); folder names may be EmoNet's (e.g. "
                                     "AngerDetection)")
    emobox: str | None = option(None, metavar="DIR",
                                help="prepare EmoBox's folds: DIR is one corpus folder of EmoBox's data/ (<name>.jsonl, "
                                     "fold_N/) or data/ itself; one dataset per fold, NAME-emobox-foldN")
    emobox_root: str | None = option(None, metavar="DIR", help="--emobox: the folder EmoBox's wav paths are relative to")
    out: str | None = option(None, help="output folder (default: $EXHUBERT_DATA or data/prepared)")
    split_method: str | None = option(None, metavar="METHOD",
                                      help="override the registry's split method: own, speaker, random, auto, or "
                                           "kfold:K")
    folds: int | None = option(None, type=int, metavar="K",
                               help="speaker-independent K-fold: one dataset per fold, NAME-fold1ofK .. NAME-foldKofK "
                                    "(the same as --split-method kfold:K)")
    seed: int = option(0, type=int, help="split seed (default 0)")
    on_error: str = option("skip", choices=ON_ERROR, help="bad audio: skip and count (default), or stop at the first one")
    label_map: str | None = option(None, help="extra mapping rows (CSV: corpus,label,meaning,class,reason)")
    workers: int = option(1, type=int, help="decoding processes (default 1: decoding runs at ~2k files/s already; more "
                                            "helps only for large corpora in heavy formats)")
    keep_no_majority: bool = option(False, action="store_true",
                                    help="keep the utterances whose annotators reached no majority label (IEMOCAP "
                                         "xxx, MSP-Podcast X, manifest rows with a label_dist but no label) for "
                                         "train.py --targets soft; they have no hard label, are never trained or "
                                         "scored on one, and split as their speaker")
    force: bool = option(False, action="store_true", help="rebuild even if up to date")
    no_progress: bool = option(False, action="store_true",
                               help="no progress (a bar on a terminal, else periodic lines on stderr)")
    list_corpora: bool = option(False, flag="--list", action="store_true", help="list the known corpora and exit")


def _arguments() -> argparse.ArgumentParser:
    """The command line: --config FILE and the flags PrepareOptions declares."""
    return command_parser(__doc__, PrepareOptions, prog="python -m exhubert_jax.data.prepare")


def parse_args(argv: Iterable[str] | None, p: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The parsed flags over --config's values (flags win)."""
    return parse(p or _arguments(), None if argv is None else list(argv), PrepareOptions)


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
    from exhubert_jax.data.prepare.folds import prepare_folds

    k = _folds_of(p, args)
    if args.emobox:
        if args.corpus or args.source or args.manifest or k or not args.emobox_root:
            p.error("--emobox DIR takes --emobox-root DIR (and no --corpus, --source, --manifest or --folds)")
        options.pop("split_method")
        return prepare_emobox_folders(args.emobox, args.emobox_root, options)
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
    args = parse_args(argv, p)
    if args.list:
        print(_list_corpora())
        return 0
    if args.workers < 1:
        p.error(f"--workers must be at least 1 (decoding processes), got {args.workers}")
    options = dict(out=args.out, split_method=args.split_method, seed=args.seed, on_error=args.on_error,
                   force=args.force, label_map=args.label_map, workers=args.workers, progress=not args.no_progress,
                   keep_no_majority=args.keep_no_majority)
    if args.emonet and (args.corpus or args.source or args.manifest):
        p.error("--emonet DIR prepares every corpus folder in DIR; for one, use --corpus NAME --source DIR/NAME")
    make_output_dir(args.out or default_data_dir(), "--out")
    try:
        result = prepare_emonet_root(args.emonet, options) if args.emonet else _run(p, args, options)
    except KeyboardInterrupt:
        what = ("the corpus being prepared was not written; corpora already prepared are kept" if args.emonet else
                f"{args.corpus or args.emobox} was not prepared")
        raise Interrupted(f"{what} (a previous copy, if any, is unchanged)") from None
    if isinstance(result, int):
        return result
    for summary in result if isinstance(result, list) else [result]:
        print(json.dumps(summary), flush=True)
    return 0
