"""Every option of train.py declared once, as a dataclass field (process.options.option): its flag, help, choices,
check, the stages that use it, its paper/demo/transfer defaults and whether it may differ on resume. The argparse
arguments, config files, validate(), the run.json options, the stage defaults, the refusal of a flag the stage does
not use and the resumable options are generated from these declarations (TrainOptions here; train.py's own flags in
training.stage_flags)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from exhubert_jax.data.audio import MIN_SAMPLES, SAMPLE_RATE
from exhubert_jax.data.loading.batching import SAMPLINGS
from exhubert_jax.model.config import INPUT_MODES, LABEL_SPACES
from exhubert_jax.model.heads import format_task_weights, parse_task_weights
from exhubert_jax.process.options import (AT_LEAST_1, KINDS, NON_NEGATIVE, POSITIVE, Check, Spec,  # noqa: F401
                                          add_flags, dest_of, flag_of, flags, problem, specs)
from exhubert_jax.process.options import option as base_option
from exhubert_jax.training.augmentation.pipeline import AugmentOptions
from exhubert_jax.training.imbalance import CORPUS_WEIGHTS_CHECK, parse_corpus_weights
from exhubert_jax.training.optimizer import SCHEDULES
from exhubert_jax.training.step import TRAINING_STAGES, LossOptions, TrainError
from exhubert_jax.training.update_rules import UPDATES

STAGE_NAMES = ("finetune", "expand", "transfer")
TRAINING = TRAINING_STAGES


def option(default: Any, *, stages: tuple[str, ...] = STAGE_NAMES, **declaration: Any) -> Any:
    """A training option (process.options.option) used by the given train.py stages (default: all of them)."""
    return base_option(default, stages=stages, **declaration)


def validate_options(opts: Any) -> None:
    """A TrainError naming the first declared option whose value cannot work, its flag and the value."""
    for f, spec in specs(opts):
        message = problem(f, spec, getattr(opts, f.name))
        if message:
            raise TrainError(message)


def stage_defaults(kind: str, *classes: Any) -> dict:
    """{field: value} of the options whose default differs for this kind of run (paper, demo or transfer)."""
    out = {}
    for cls in classes:
        for f, spec in specs(cls):
            fallback = spec.defaults.get("paper", dataclasses.MISSING) if kind == "transfer" else dataclasses.MISSING
            value = spec.defaults.get(kind, fallback)
            if value is not dataclasses.MISSING:
                out[f.name] = value
    return out


def from_args(cls: Any, args: argparse.Namespace, kind: str, **extra: Any) -> Any:
    """An instance of cls from parsed flags: a flag not given takes the kind's default, else the field's; flags
    the stage does not use keep the field's default; extra overrides."""
    defaults, values = stage_defaults(kind, cls), {}
    for f, spec in specs(cls):
        dest = dest_of(f)
        if dest is None or args.stage not in spec.stages:
            continue
        value = getattr(args, dest)
        if value is None:
            value = defaults.get(f.name)
        elif spec.parse is not None:
            value = spec.parse(value)
        if value is not None:
            values[f.name] = value
    return cls(**{**values, **extra})


def unused_flag(parser: argparse.ArgumentParser, args: argparse.Namespace, *classes: Any) -> str | None:
    """The refusal of the first flag given (not at its default) that the chosen stage does not use, or None."""
    from_config = getattr(args, "config_keys", frozenset())
    for cls in classes:
        for f, spec in specs(cls):
            dest = dest_of(f)
            if dest and args.stage not in spec.stages and (getattr(args, dest) != parser.get_default(dest)
                                                           or dest in from_config):
                return (f"{flag_of(f)} does nothing with --stage {args.stage}; it is used by --stage "
                        f"{' and '.join(spec.stages)}")
    return None


def flag_text(f: dataclasses.Field, value: Any) -> Any:
    """What the field's flag takes for `value`: the text its `parse` reads back (task weights), else the value."""
    return format_task_weights(value) if f.metadata["option"].parse is parse_task_weights and not isinstance(
        value, str) else value


def resumable(cls: Any) -> frozenset[str]:
    """Options that may differ on resume without changing the parameters trained."""
    return frozenset(f.name for f, spec in specs(cls) if spec.resumable)


def run_options(opts: Any) -> dict:
    """run.json's options: every field of opts by name, as JSON holds it (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(opts), default=str))


def warmup_problem(steps: int, warmup_steps: int, accumulate: int) -> str | None:
    """Why a warm-up leaves no optimizer update after it (the schedule counts updates: loop.schedule_for), or None."""
    if warmup_steps // accumulate < -(-steps // accumulate):
        return None
    return f"--warmup-steps {warmup_steps} leaves no update after the warm-up: it must be fewer than --steps {steps}"


@dataclasses.dataclass
class TrainOptions(LossOptions, AugmentOptions):
    """Knobs of one training run, each declared once with its flag (option); the loss's own options come from
    training.step.LossOptions, the augmentation's from training.augmentation.AugmentOptions, and the step reads
    them from this one object."""

    steps: int = option(3000, type=int, stages=TRAINING, check=AT_LEAST_1, paper=3000, demo=400, transfer=10000,
                        help="optimizer updates: rounds over all corpora (paper {paper}, transfer {transfer}, "
                             "demo {demo})")
    update: str = option("round", choices=UPDATES, stages=TRAINING,
                         help="one update per round over all corpora (paper), or one per corpus batch")
    batch_size: int = option(8, type=int, stages=TRAINING, check=AT_LEAST_1, paper=8, demo=8,
                             help="global batch size per corpus (divisible by the device count)")
    max_seconds: float = option(3.0, type=float, stages=TRAINING, paper=3.0, demo=1.0,
                                check=Check(lambda v: v * SAMPLE_RATE >= MIN_SAMPLES,
                                            f"must cover one HuBERT frame ({MIN_SAMPLES / SAMPLE_RATE} s)"),
                                help="crop audio to this many seconds (paper {paper}, demo {demo})")
    input_mode: str = option("masked", flag="--input", choices=INPUT_MODES, stages=TRAINING,
                             help="masked: utterances with a padding mask; card: padded/cropped to exactly 3 s, "
                                  "no mask")
    lr: float = option(1e-5, type=float, stages=TRAINING, check=POSITIVE, paper=1e-5, demo=2e-3,
                       help="AdamW peak learning rate (paper 1e-5, demo 2e-3)")
    schedule: str = option("constant", choices=SCHEDULES, stages=TRAINING,
                           help="learning-rate schedule after warm-up (paper: constant)")
    warmup_steps: int = option(0, type=int, stages=TRAINING, check=NON_NEGATIVE,
                               help="linear warm-up from 0 over N updates")
    weight_decay: float = option(0.01, type=float, stages=TRAINING, check=NON_NEGATIVE,
                                 help="AdamW decoupled weight decay on all trainable parameters "
                                      "(torch.optim.AdamW's default)")
    eval_every: int = option(500, type=int, stages=TRAINING, check=AT_LEAST_1, paper=500, demo=50, resumable=True,
                             help="validate (and checkpoint) every N steps")
    checkpoint_every: int | None = option(None, flag=False, check=AT_LEAST_1, resumable=True)  # None: eval_every
    patience: int | None = option(None, type=int, stages=TRAINING, check=AT_LEAST_1,
                                  help="stop after N evaluations without a better mean validation UAR")
    keep: int = option(3, type=int, stages=TRAINING, check=AT_LEAST_1, resumable=True,
                       help="latest checkpoints to keep (best is exported separately)")
    seed: int = option(0, type=int)
    clip_norm: float | None = option(None, type=float, stages=TRAINING, check=POSITIVE,
                                     help="clip gradients to this global norm")
    accumulate: int = option(1, type=int, stages=TRAINING, check=AT_LEAST_1, help="gradient accumulation steps")
    max_bad_steps: int = option(10, type=int, stages=TRAINING, check=AT_LEAST_1, resumable=True,
                                help="stop after N consecutive non-finite steps")
    label_space: str = option("emotion", flag="--labels", choices=LABEL_SPACES, stages=("transfer",), cli="native",
                              help="transfer: a fresh head for the corpus's own classes (default), or the 6 emotion "
                                   "classes")
    task_weights: tuple[float, float] = option(
        (1.0, 1.0), stages=TRAINING, parse=parse_task_weights, cli=None, metavar="categorical=W,dimensional=W",
        check=Check(lambda w: len(w) == 2 and min(w) >= 0 and max(w) > 0,
                    "must be two non-negative weights (categorical, dimensional), not both 0"),
        help="loss weight of each task (default 1 each); a corpus adds the losses of the labels it has")
    sampling: str = option("natural", choices=SAMPLINGS, stages=TRAINING,
                           help="natural: each example once per epoch (the paper); balanced: every class trained on "
                                "(--labels) equally often in each corpus's batches")
    corpus_weights: str | dict = option(
        "equal", stages=TRAINING, parse=parse_corpus_weights, check=CORPUS_WEIGHTS_CHECK, metavar="equal|size|FILE",
        help="weight of each corpus's loss in a round's average: equal (the paper), size (its training split's "
             "size), or a CSV file of corpus,weight rows (1 for corpora left out)")
    log_every: int = option(10, flag=False, check=AT_LEAST_1, resumable=True)
    quiet: bool = option(False, action="store_true", resumable=True,
                         help="no progress and no per-evaluation lines: what the model starts from, warnings, "
                              "errors and the results")
    curve_png: bool = option(False, flag=False, resumable=True)
    stop_after: int | None = option(None, flag=False, resumable=True)  # stop (checkpointed) after this step; tests

    def validate(self) -> None:
        """A TrainError naming the one flag whose value cannot work, and the value."""
        validate_options(self)
        self.check_augmentation()
        problem = warmup_problem(self.steps, self.warmup_steps, self.accumulate)
        if problem:
            raise TrainError(problem)
        if self.corpus_weights != "equal" and self.update != "round":
            raise TrainError("--corpus-weights weighs the corpora of a round; with --update per-corpus every corpus "
                             "batch makes its own update, so leave it at equal or use --update round")
