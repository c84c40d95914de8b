"""Every option of train.py declared once, as a dataclass field: its flag, help, choices, check, the stages that use
it, its paper/demo/transfer defaults and whether it may differ on resume. The argparse arguments, validate(), the
run.json options, the stage defaults, the refusal of a flag the stage does not use and the resumable options are
generated from these declarations (TrainOptions here; train.py's own flags in exhubert_jax.training.stage_flags)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Callable, Collection

from exhubert_jax.data.audio import MIN_SAMPLES, SAMPLE_RATE
from exhubert_jax.evaluation.dimensional import LOSSES
from exhubert_jax.model.config import INPUT_MODES, LABEL_SPACES
from exhubert_jax.model.heads import parse_task_weights
from exhubert_jax.training.optimizer import SCHEDULES
from exhubert_jax.training.step import TrainError
from exhubert_jax.training.update_rules import UPDATES

STAGE_NAMES = ("finetune", "expand", "transfer")
TRAINING = ("finetune", "transfer")
# Stage defaults: the paper's, the demo's, and transfer on real corpora (the paper's where it declares none).
KINDS = ("paper", "demo", "transfer")


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on an option's value, and what a message says when it fails."""

    ok: Callable[[Any], bool]
    why: str


AT_LEAST_1 = Check(lambda v: v >= 1, "must be at least 1")
POSITIVE = Check(lambda v: v > 0, "must be positive")
NON_NEGATIVE = Check(lambda v: v >= 0, "must not be negative")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One option's declaration beyond its default (the metadata of its dataclass field)."""

    flag: str | bool | None  # None: --the-field-name; False: not on the command line (set through the API)
    help: str | None
    choices: Collection | None  # a tuple, or a mapping whose keys are the choices (read when parsing)
    type: Callable | None
    check: Check | None
    stages: tuple[str, ...]
    defaults: dict  # {kind: value} for the kinds of KINDS where the stage default differs from the field's
    resumable: bool
    cli: Any  # the flag's argparse default where it is not the field's (--labels: native), else MISSING
    parse: Callable | None  # the flag's text -> the field's value (--task-weights)
    action: str | None
    metavar: str | None


def option(default: Any, *, flag: str | bool | None = None, help: str | None = None, choices: Collection | None = None,
           type: Callable | None = None, check: Check | None = None, stages: tuple[str, ...] = STAGE_NAMES,
           paper: Any = dataclasses.MISSING, demo: Any = dataclasses.MISSING, transfer: Any = dataclasses.MISSING,
           resumable: bool = False, cli: Any = dataclasses.MISSING, parse: Callable | None = None,
           action: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field declaring one option (see Spec); help may name {paper}, {demo} and {transfer}."""
    given = dict(paper=paper, demo=demo, transfer=transfer)
    defaults = {k: v for k, v in given.items() if v is not dataclasses.MISSING}
    if defaults and help:
        help = help.format(**{k: defaults.get(k, defaults.get("paper")) for k in KINDS})
    spec = Spec(flag, help, choices, type, check, tuple(stages), defaults, resumable, cli, parse, action, metavar)
    return dataclasses.field(default=default, metadata={"option": spec})


def specs(cls: Any) -> list[tuple[dataclasses.Field, Spec]]:
    """(field, Spec) of every declared option of a dataclass (or instance), in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(f: dataclasses.Field) -> str | None:
    """The field's command-line flag (--labels for label_space), or None when it has none."""
    flag = f.metadata["option"].flag
    return None if flag is False else flag or f"--{f.name.replace('_', '-')}"


def dest_of(f: dataclasses.Field) -> str | None:
    """The argparse attribute the field's flag parses into (args.labels for label_space)."""
    flag = flag_of(f)
    return flag[2:].replace("-", "_") if flag else None


def add_flags(parser: Any, cls: Any) -> None:
    """Add every declared flag of a dataclass to an argparse parser (or argument group)."""
    for f, spec in specs(cls):
        flag = flag_of(f)
        if flag is None:
            continue
        default = (None if spec.defaults else f.default) if spec.cli is dataclasses.MISSING else spec.cli
        kwargs = dict(action=spec.action, help=spec.help, default=default, metavar=spec.metavar)
        if spec.action in (None, "store"):
            kwargs.update(type=spec.type, choices=spec.choices)
        parser.add_argument(flag, dest=dest_of(f), **{k: v for k, v in kwargs.items() if v is not None})


def problem(f: dataclasses.Field, spec: Spec, value: Any) -> str | None:
    """Why the value cannot work for this option (naming its flag and the value), or None."""
    if value is None and f.default is None:
        return None
    why = None
    if spec.choices is not None and value not in spec.choices:
        why = f"must be one of {', '.join(map(str, spec.choices))}"
    elif spec.check is not None and not spec.check.ok(value):
        why = spec.check.why
    return why and f"{flag_of(f) or f.name} {why}, got {value!r}"


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
    for cls in classes:
        for f, spec in specs(cls):
            dest = dest_of(f)
            if dest and args.stage not in spec.stages and getattr(args, dest) != parser.get_default(dest):
                return (f"{flag_of(f)} does nothing with --stage {args.stage}; it is used by --stage "
                        f"{' and '.join(spec.stages)}")
    return None


def resumable(cls: Any) -> frozenset[str]:
    """Options that may differ on resume without changing the parameters trained."""
    return frozenset(f.name for f, spec in specs(cls) if spec.resumable)


def flags(cls: Any) -> dict[str, str]:
    """{field: how a message names it}: its flag, or its name when it has none."""
    return {f.name: flag_of(f) or f.name for f, _ in specs(cls)}


def run_options(opts: Any) -> dict:
    """run.json's options: every field of opts by name, as JSON holds it (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(opts), default=str))


@dataclasses.dataclass
class TrainOptions:
    """Knobs of one training run, each declared once with its flag (exhubert_jax.training.options.option)."""

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
    warmup_steps: int = option(0, type=int, stages=TRAINING, help="linear warm-up from 0 over N updates")
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
    dim_loss: str = option("ccc", choices=LOSSES, stages=TRAINING,
                           help="dimensional loss: 1 - CCC averaged over the dimensions (default), or MSE")
    log_every: int = option(10, flag=False, check=AT_LEAST_1, resumable=True)
    quiet: bool = option(False, action="store_true", resumable=True, help="no progress bar")
    curve_png: bool = option(False, flag=False, resumable=True)
    stop_after: int | None = option(None, flag=False, resumable=True)  # stop (checkpointed) after this step; tests

    def validate(self) -> None:
        """A TrainError naming the one flag whose value cannot work, and the value."""
        validate_options(self)
