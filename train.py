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

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.cli)
    from exhubert_jax.cli import run_command

    sys.exit(run_command("train", hugepages=True))

from exhubert_jax.cli import USER_ERROR, command


def build_parser() -> argparse.ArgumentParser:
    """The command line (no abbreviations: --step is not --steps)."""
    from exhubert_jax.config import EXPANSION_STYLES
    from exhubert_jax.stages import DEMO, PAPER, TRANSFER_STEPS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--stage", choices=("finetune", "expand", "transfer"), default="finetune")
    ap.add_argument("--corpora", help="finetune: comma-separated prepared corpora and groups (emoset, unseen, all)")
    ap.add_argument("--corpus", help="transfer: the one corpus to fine-tune on")
    ap.add_argument("--data-dir", default=None, help="prepared corpora (default $EXHUBERT_DATA or data/prepared)")
    ap.add_argument("--workdir", help="run folder (default runs/finetune, runs/expand, runs/transfer-CORPUS)")
    ap.add_argument("--init", help="exhubert-jax checkpoint dir (converted HF model, or a stage's best/ or final/)")
    ap.add_argument("--random-init", action="store_true", help="allow training from random weights on real corpora")
    ap.add_argument("--preset", choices=("tiny", "base", "large", "xlarge"),
                    help="random-init model (default: tiny for the demo, else large)")
    ap.add_argument("--steps", type=int, help=f"optimizer updates: rounds over all corpora (paper {PAPER['steps']}, "
                                              f"transfer {TRANSFER_STEPS}, demo {DEMO['steps']})")
    ap.add_argument("--update", choices=("round", "per-corpus"), default="round",
                    help="one update per round over all corpora (paper), or one per corpus batch")
    ap.add_argument("--batch-size", type=int, help="global batch size per corpus (divisible by the device count)")
    ap.add_argument("--max-seconds", type=float, help="crop audio to this many seconds (paper 3.0, demo 1.0)")
    ap.add_argument("--input", choices=("masked", "card"), default="masked",
                    help="masked: utterances with a padding mask; card: padded/cropped to exactly 3 s, no mask")
    ap.add_argument("--lr", type=float, help="AdamW peak learning rate (paper 1e-5, demo 2e-3)")
    ap.add_argument("--schedule", choices=("constant", "linear", "cosine"), default="constant",
                    help="learning-rate schedule after warm-up (paper: constant)")
    ap.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up from 0 over N updates")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay on all trainable "
                                                                     "parameters (torch.optim.AdamW's default)")
    ap.add_argument("--eval-every", type=int, help="validate (and checkpoint) every N steps")
    ap.add_argument("--patience", type=int, help="stop after N evaluations without a better mean validation UAR")
    ap.add_argument("--keep", type=int, default=3, help="latest checkpoints to keep (best is exported separately)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")
    ap.add_argument("--remat", action="store_true", help="rematerialise encoder layers (less memory)")
    ap.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    ap.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    ap.add_argument("--max-bad-steps", type=int, default=10, help="stop after N consecutive non-finite steps")
    ap.add_argument("--labels", choices=("emotion", "native"), default="native",
                    help="transfer: a fresh head for the corpus's own classes (default), or the 6 emotion classes")
    ap.add_argument("--task", choices=("categorical", "dimensional", "both"), default="categorical",
                    help="finetune/transfer: the 6 classes, arousal/valence/dominance regression, or both heads")
    ap.add_argument("--task-weights", metavar="categorical=W,dimensional=W",
                    help="loss weight of each task (default 1 each); a corpus adds the losses of the labels it has")
    ap.add_argument("--dim-loss", choices=("ccc", "mse"), default="ccc",
                    help="dimensional loss: 1 - CCC averaged over the dimensions (default), or MSE")
    ap.add_argument("--adapter", action="append", metavar="SPEC",
                    help="finetune/transfer: add an adapter, e.g. lora:r=8,alpha=16,targets=q+v, ia3, bitfit, "
                         "bottleneck:size=64,style=houlsby, bbe:copies=1,style=zll (repeat to compose, in order)")
    ap.add_argument("--copies", type=int, default=1, help="expand: copies per layer (1 = ExHuBERT, 2 = XLarge)")
    ap.add_argument("--style", choices=EXPANSION_STYLES, default="zll",
                    help="expand: zll (paper), zero_out (LLaMA Pro) or gated (the released ExHuBERT layout)")
    ap.add_argument("--freeze", choices=("original", "none"), default="original",
                    help="expand/transfer: freeze the original layers of an expanded model, or nothing")
    ap.add_argument("--distributed", action="store_true",
                    help="multi-host: join the other processes through jax.distributed.initialize() (the coordinator, "
                         "process count and id from the flags below, else detected from SLURM, Open MPI, Kubernetes "
                         "or Cloud TPU environments)")
    ap.add_argument("--coordinator", help="--distributed: HOST:PORT of process 0's coordinator service")
    ap.add_argument("--num-processes", type=int, help="--distributed: number of processes (hosts) in the run")
    ap.add_argument("--process-id", type=int, help="--distributed: this process's id, 0 .. num-processes - 1")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


TRAINING = ("finetune", "transfer")
# Flags only some stages use: given with another stage they would do nothing, so they are refused.
STAGE_FLAGS = {
    **{flag: TRAINING for flag in (
        "data_dir", "random_init", "preset", "steps", "update", "batch_size", "max_seconds", "input", "lr",
        "schedule", "warmup_steps", "weight_decay", "eval_every", "patience", "keep", "clip_norm", "accumulate",
        "max_bad_steps", "adapter", "task", "task_weights", "dim_loss")},
    "corpora": ("finetune",), "corpus": ("transfer",), "labels": ("transfer",),
    "copies": ("expand",), "style": ("expand",),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed flags; a flag the chosen stage does not use is an error naming it and the stages that use it."""
    ap = build_parser()
    args = ap.parse_args(argv)
    defaults = vars(ap.parse_args([]))
    for flag, stages in STAGE_FLAGS.items():
        if args.stage not in stages and getattr(args, flag) != defaults[flag]:
            ap.error(f"--{flag.replace('_', '-')} does nothing with --stage {args.stage}; it is used by --stage "
                     f"{' and '.join(stages)}")
    return args


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
    from exhubert_jax.stages import STAGES

    if args.distributed:
        start_distributed(args)
    elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        print("error: --coordinator, --num-processes and --process-id need --distributed", file=sys.stderr)
        return USER_ERROR
    return STAGES[args.stage](args)
