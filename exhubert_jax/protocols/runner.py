"""Run a protocol end to end: every fold of a corpus (EmoBox's published folds or speaker k-fold, as prepared), or
leave-one-corpus-out. Each run trains with train.py's stages in its own workdir and is then evaluated on its
test corpus's test split; an interrupted protocol resumes at the run it stopped in (that run resumes from its
checkpoints). Writes WORKDIR/results.md and results.json: a row per run, mean ± sd and the pooled UAR.

    python -m exhubert_jax.protocol folds --folds emodb-emobox --workdir runs/emodb-emobox \\
        -- --stage transfer --init checkpoints/exhubert --labels native
    python -m exhubert_jax.protocol loco --corpora emoset --leave-out all --workdir runs/loco \\
        [--transfer-steps 1000] -- --init checkpoints/hubert-large
    python -m exhubert_jax.protocol sweep --config sweep.yaml     # a grid of train.py options, one table
Everything after `--` is passed to train.py for every run (the protocol sets --corpus/--corpora, --workdir and
--data-dir itself). The runs themselves are protocols.runs; a sweep's grid and table, protocols.sweep.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.protocols.runner", hugepages=True))

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from exhubert_jax.protocols import sweep
from exhubert_jax.protocols.runs import (OWN_FLAGS, PLAN, RESULT, ProtocolError, Run, Stage,  # noqa: F401
                                         _check_train_args, evaluate_stage, fold_corpora,
                                         fold_runs, loco_corpora, loco_runs, run_protocol,
                                         run_stage, with_flags)
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import AT_LEAST_1, add_options, option, parse


@dataclass
class FoldsOptions:
    """`folds`: which prepared folds to run."""

    folds: str | None = option(None, help="prepared folds: a prefix (emodb-emobox: EmoBox's folds; emodb: "
                                          "emodb-fold1ofK ...) or comma-separated names")


@dataclass
class LocoOptions:
    """`loco`: the corpora, the ones left out in turn, and an optional transfer to each."""

    corpora: str | None = option(None, help="prepared corpora and groups (emoset, demo, ...)")
    leave_out: str = option("all", help="all, or comma-separated corpora to leave out in turn")
    transfer_steps: int | None = option(None, type=int, check=AT_LEAST_1,
                                        help="also transfer to the left-out corpus's train split for N steps and "
                                             "test again")


@dataclass
class ProtocolOptions:
    """Both modes: where the protocol writes and reads, and its test evaluations."""

    workdir: str | None = option(None, help="protocol folder: one workdir per run inside it")
    data_dir: str | None = option(None, help="prepared corpora (default $EXHUBERT_DATA or data/prepared)")
    eval_batch_size: int = option(8, type=int, check=AT_LEAST_1, help="batch size of the test evaluations")


# mode -> (its --help line, its options, the dests it requires on the command line or in --config)
MODES = {"folds": ("train and test on every fold of a corpus", (FoldsOptions, ProtocolOptions), ("folds", "workdir")),
         "loco": ("leave one corpus out: fine-tune on the others, test on it", (LocoOptions, ProtocolOptions),
                  ("corpora", "workdir"))}
SWEEP_LINE = "train a grid of train.py options (the --config file's base and grid) and tabulate every cell"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """(the command's parser, each mode's subparser): every mode takes --config and its declared flags."""
    p = argparse.ArgumentParser(prog="python -m exhubert_jax.protocol", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = p.add_subparsers(dest="mode", required=True)
    modes = {}
    for mode, (line, classes, required) in MODES.items():
        modes[mode] = s = sub.add_parser(mode, help=line, allow_abbrev=False)
        add_options(s, *classes)
        for action in s._actions:
            action.required = action.dest in required
    modes["sweep"] = s = sub.add_parser("sweep", help=SWEEP_LINE, allow_abbrev=False,
                                        description=sweep.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(s, sweep.SweepOptions)
    next(a for a in s._actions if a.dest == "config").required = True
    return p, modes


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(protocol options, the train.py arguments after `--`): the mode's flags over its --config file's values."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p, modes = build_parser()
    if not own or own[0] not in modes:
        return p.parse_args(own), train_argv  # --help, or argparse's error naming the modes
    if own[0] == "sweep":  # its file holds the grid too: protocols.sweep reads it
        args = modes["sweep"].parse_args(own[1:])
        args.mode, args.given = "sweep", {k: v for k, v in vars(args).items()
                                          if k != "config" and v != modes["sweep"].get_default(k)}
        return args, train_argv
    args = parse(modes[own[0]], own[1:], *MODES[own[0]][1])
    args.mode = own[0]
    return args, train_argv


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when every run finished, 2 for a bad command line or a failed run, 130 when interrupted."""
    args, train_argv = parse_args(argv)
    if args.mode == "sweep":
        if train_argv:
            raise ProtocolError("sweep: train.py's options go in the --config file's base and grid, not after --")
        doc = sweep.run_sweep(args.config, args.given)
        print(f"\n{doc['table']}\n\nwrote {doc['workdir']}/sweep.md and sweep.json")
        return 0
    workdir = Path(args.workdir)
    if args.eval_batch_size < 1:
        raise ProtocolError(f"--eval-batch-size must be at least 1, got {args.eval_batch_size}")
    input_mode = _check_train_args(train_argv).input
    if args.mode == "folds":
        runs = fold_runs(fold_corpora(args.folds, args.data_dir), train_argv, workdir, args.data_dir)
    else:
        if args.transfer_steps is not None and args.transfer_steps < 1:
            raise ProtocolError(f"--transfer-steps must be at least 1, got {args.transfer_steps}")
        names, left = loco_corpora(args.corpora, args.leave_out, args.data_dir)
        runs = loco_runs(names, left, train_argv, workdir, args.data_dir, args.transfer_steps)
    doc = run_protocol(args.mode, runs, workdir, args.data_dir, input_mode, args.eval_batch_size)
    print(f"\n{doc['table']}\n\nwrote {workdir}/results.md and results.json")
    return 0
