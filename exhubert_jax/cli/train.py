"""Train ExHuBERT: `--stage finetune` (round-robin over corpora), `--stage expand` (BBE), `--stage transfer`.

A step is one round: one batch from every corpus, gradients averaged over the corpora, one AdamW update (paper,
section 4.1); `--update per-corpus` makes one update per corpus batch instead.

With no --corpora and nothing but the synthetic demo corpora prepared, `python train.py --stage finetune` trains a tiny
model on the demo corpora (prepared on the fly) with demo settings, so a fresh clone runs end to end. Real corpora
need --init (a converted HuBERT Large), or --random-init on purpose.
"""

from __future__ import annotations

import argparse
import sys

from exhubert_jax.process.commands import USER_ERROR, command


def build_parser() -> argparse.ArgumentParser:
    """The command line (no abbreviations: --step is not --steps): the flags declared by StageFlags and
    TrainOptions (exhubert_jax.training.stage_flags, exhubert_jax.training.options)."""
    from exhubert_jax.process.options import command_parser
    from exhubert_jax.training.options import TrainOptions
    from exhubert_jax.training.stage_flags import StageFlags

    parser = command_parser(__doc__, StageFlags, groups={"training options": TrainOptions})
    config = next(a for a in parser._actions if a.dest == "config")
    config.help += "; a run's run.json runs that run again"
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed flags over --config's values (a run.json re-runs that run); a flag or key the chosen stage does not
    use is an error naming it and the stages that use it."""
    from exhubert_jax.process.options import OptionsError, parse
    from exhubert_jax.training.options import TrainOptions, unused_flag, warmup_problem
    from exhubert_jax.training.run_record import as_config
    from exhubert_jax.training.stage_flags import StageFlags

    ap = build_parser()
    args = parse(ap, argv, StageFlags, TrainOptions, translate=as_config)
    refusal = unused_flag(ap, args, TrainOptions, StageFlags)
    if refusal:
        ap.error(refusal)
    problem = args.steps is not None and warmup_problem(args.steps, args.warmup_steps, args.accumulate)
    if problem:  # else the stage's default --steps decides, in TrainOptions.validate
        raise OptionsError(problem)
    return args


def check_init(init: str | None) -> None:
    """--init that is neither an existing path nor a Hub id is refused before any demo notice, data or model."""
    from pathlib import Path

    from exhubert_jax.hub.repos import parse_hub_id
    from exhubert_jax.pretrained import CheckpointError

    if init and parse_hub_id(init) is None and not Path(init).exists():
        raise CheckpointError(f"--init {init}: checkpoint directory {init} does not exist")


def start_distributed(args: argparse.Namespace) -> None:
    """Join the run's processes (gloo collectives when they run on CPU); only process 0 prints."""
    import os

    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)
    if jax.process_index() != 0:
        sys.stdout = open(os.devnull, "w")


@command
def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (2 for user errors, printed as one line without a traceback)."""
    args = parse_args(argv)
    check_init(args.init)  # here, not in parse_args: a protocol parses a stage's flags before its --init exists
    from exhubert_jax.training.stages import STAGES

    if args.distributed:
        start_distributed(args)
    elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        print("error: --coordinator, --num-processes and --process-id need --distributed", file=sys.stderr)
        return USER_ERROR
    return STAGES[args.stage](args)
