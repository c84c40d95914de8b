"""The three stages behind `train.py`: multi-corpus fine-tuning, Backbone Block Expansion, transfer to one corpus.

Each stage takes the parsed command line (an argparse.Namespace with the flags of train.py) and returns an exit code.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import EMOTION_CLASSES
from exhubert_jax.training.options import TrainOptions, from_args, stage_defaults
from exhubert_jax.training.stage_flags import StageFlags

# The paper's settings (section 4.1): AdamW, lr 1e-5, 3k steps, 3 s inputs (the model card's length); the demo's: a
# tiny model needs a much larger lr to learn in a few CPU minutes (400 rounds over the 3 demo corpora are 1200 corpus
# batches); the paper's transfer curves run over 10k steps. Each is declared with its option (exhubert_jax.training.options).
PAPER = stage_defaults("paper", TrainOptions, StageFlags)
DEMO = stage_defaults("demo", TrainOptions, StageFlags)
TRANSFER_STEPS = stage_defaults("transfer", TrainOptions)["steps"]
# Demo model: the tiny preset without dropout/masking, and with the base-style GroupNorm CNN: the layer-norm CNN
# normalises every frame and so erases the energy contour that the synthetic classes differ in (measured: mean
# validation UAR ~0.33 with it, ~0.65-0.70 without, at the same settings).
DEMO_OVERRIDES = dict(hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, final_dropout=0.0,
                      layerdrop=0.0, mask_time_prob=0.0, feat_extract_norm="group", conv_bias=False)
CONVERT_HINT = ("pass --init facebook/hubert-large-ls960-ft (HuBERT Large from the Hub, converted on first use), or "
                "convert it first: python -m converters.torch_to_flax hubert-large-ls960-ft checkpoints/hubert-large, "
                "then pass --init checkpoints/hubert-large (or --random-init to train from random weights on "
                "purpose)")


class UsageError(ExhubertError):
    """A command line that cannot run as given."""


# --------------------------------------------------------------------------------------------------- resolution


def data_dir_of(args) -> Path:
    """--data-dir, else $EXHUBERT_DATA, else data/prepared."""
    from exhubert_jax.data.loading.resolve import data_root

    return data_root(args.data_dir)


def finetune_corpora(spec: str | None, data_dir: Path) -> tuple[list[str], bool]:
    """(corpus names, demo?) for --corpora; no spec and nothing but demo corpora prepared means the demo."""
    from exhubert_jax.data.loading.resolve import group_of, prepared_names, registry_group, resolve_corpora

    if spec is None:
        have = prepared_names(data_dir)
        if any(group_of(n) != "demo" for n in have):
            raise UsageError(f"--corpora is required: prepared under {data_dir}: {', '.join(have)} "
                             "(use names, or the groups emoset, unseen, all)")
        return registry_group("demo"), True
    names = resolve_corpora(spec, data_dir)
    return names, all(group_of(n) == "demo" for n in names)


def ensure_demo(data_dir: Path) -> None:
    """Prepare the synthetic demo corpora if they are not there yet (in a multi-process run, process 0 prepares them
    while the others wait)."""
    import jax

    from exhubert_jax.data.loading.resolve import prepared_names, registry_group

    missing = [n for n in registry_group("demo") if n not in prepared_names(data_dir)]
    if missing and jax.process_index() == 0:
        from exhubert_jax.data.demo.synthetic import prepare_demo

        print(f"preparing synthetic demo corpora {', '.join(missing)} in {data_dir} ...", flush=True)
        prepare_demo(data_dir)
    if jax.process_count() > 1:
        from jax.experimental.multihost_utils import sync_global_devices

        sync_global_devices("demo corpora prepared")


def default_workdir(args) -> Path:
    """runs/finetune, runs/expand or runs/transfer-CORPUS."""
    if args.workdir:
        return Path(args.workdir)
    return Path("runs") / (f"transfer-{args.corpus}" if args.stage == "transfer" else args.stage)


def finetune_candidates(runs: Path = Path("runs")) -> list[Path]:
    """best/ folders of fine-tuning runs under runs/ (their run.json says stage finetune)."""
    from exhubert_jax.process.run_folders import RUN_JSON, read_run

    return [run / "best" for run in sorted(p.parent for p in runs.glob(f"*/{RUN_JSON}"))
            if read_run(run).get("stage") == "finetune" and (run / "best").is_dir()]


def expand_init(args) -> str:
    """--init, else the one fine-tuned candidate; refuses to guess between several or to expand the demo silently."""
    from exhubert_jax.evaluation.scoring import checkpoint_caveat

    if args.init:
        return args.init
    candidates = finetune_candidates()
    if not candidates:
        raise UsageError("--stage expand needs --init DIR (a fine-tuned checkpoint); no fine-tuning run with a best/ "
                         "checkpoint was found under runs/: run --stage finetune first")
    if len(candidates) > 1:
        raise UsageError(f"--stage expand needs --init DIR: several fine-tuned checkpoints exist "
                         f"({', '.join(map(str, candidates))})")
    if checkpoint_caveat(candidates[0]):
        raise UsageError(f"--stage expand needs --init DIR: the only candidate, {candidates[0]}, was trained on the "
                         f"synthetic demo corpora; pass --init {candidates[0]} to expand it anyway")
    return str(candidates[0])


def transfer_init(args, demo: bool) -> str | None:
    """--init; for the demo corpora the previous demo stage's output; None only with --random-init."""
    if args.init or args.random_init:
        return args.init
    if demo:
        for chain in ("runs/expand/final", "runs/finetune/best"):
            if Path(chain).is_dir():
                return chain
        raise UsageError("--stage transfer needs --init DIR; run --stage finetune (and expand) first")
    raise UsageError(f"--stage transfer needs --init DIR (an ExHuBERT or HuBERT checkpoint); {CONVERT_HINT}")


def compute_dtype(args):
    """jnp dtype for --dtype."""
    import jax.numpy as jnp

    return jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32


def load_model(args, init: str | None, demo: bool):
    """(model, params) from a checkpoint, or a random --preset model (demo: tiny without dropout/masking)."""
    from exhubert_jax import from_pretrained, preset
    from exhubert_jax.adapters import build, init_params

    if init:
        from exhubert_jax.hub.repos import resolve_checkpoint

        try:  # a workdir: its best/, else final/ (as evaluate.py); a Hub id: its checkpoint, converted on first use
            directory, which = resolve_checkpoint(init)
        except FileNotFoundError as e:
            raise UsageError(f"--init {init}: {e}") from None
        model, params = from_pretrained(directory, dtype=compute_dtype(args), remat=args.remat)
        print(f"initialised from {directory}" + (f" (the {which}/ checkpoint of the workdir {init})" if which else ""))
        return model, params
    name = args.preset or (DEMO["preset"] if demo else PAPER["preset"])
    config = preset(name, label_names=EMOTION_CLASSES, **(DEMO_OVERRIDES if demo else {}))
    print(f"random init: preset {name}")
    return (build(config, dtype=compute_dtype(args), remat=args.remat),
            init_params(config, args.seed))


def train_options(args, demo: bool, **extra):
    """TrainOptions from flags, with the demo's, transfer's or paper's defaults for what was not given; evaluations
    no further apart than the run is long."""
    kind = "demo" if demo else "transfer" if args.stage == "transfer" else "paper"
    opts = from_args(TrainOptions, args, kind, **extra)
    return dataclasses.replace(opts, eval_every=min(opts.eval_every, max(opts.steps, 1)))


# ------------------------------------------------------------------------------------------------------- stages


def check_classes(corpora: dict, label_space: str, task: str) -> None:
    """Refuse a corpus whose train split holds fewer than two classes of the labels trained on: its loss would be 0
    and its validation UAR a meaningless 100 %. The corpus and its class counts are named; a corpus prepared
    before its record kept class counts is not checked."""
    if task == "dimensional":
        return
    key = "classes" if label_space == "emotion" else "native"
    for name, corpus in corpora.items():
        counts = {k: v for k, v in ((corpus.info.get("splits") or {}).get("train", {}).get(key) or {}).items() if v}
        if len(counts) == 1:
            only = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise UsageError(f"corpus {name}: its train split holds one class of its {label_space} labels ({only}); "
                             "training needs at least two (prepare it with other splits or more data, or leave it "
                             "out)")


def check_targets(corpora: dict, targets: str, task: str) -> None:
    """--targets soft needs a classifier and a training corpus with label distributions (without any, every example
    would train on its one-hot label: --targets hard)."""
    if targets != "soft":
        return
    if task == "dimensional":
        raise UsageError("--targets soft trains the classifier on label distributions; --task dimensional has none "
                         "(use --task both, or leave --targets out)")
    if all(c.split("train").dists is None for c in corpora.values()):
        raise UsageError(f"--targets soft: none of the training corpora ({', '.join(corpora)}) carries label "
                         "distributions; prepare IEMOCAP, MSP-Podcast or CREMA-D with their per-annotator files, or a "
                         "manifest with a label_dist column (docs/corpora.md), or leave --targets out")


def run_training(args, model, params, corpora: dict, opts, workdir: Path, init: str | None) -> int:
    """Train over the given corpora and print the final validation table."""
    import jax

    from exhubert_jax.adapters import labels as adapter_labels
    from exhubert_jax.data.loading.devices import make_mesh
    from exhubert_jax.evaluation.reports import uar_table
    from exhubert_jax.model.param_labels import count
    from exhubert_jax.training.loop import score_name, train

    opts.validate()  # before anything is printed or compiled
    model = with_layerdrop(args, model)
    check_classes(corpora, opts.label_space, args.task)
    labels = adapter_labels(params, model.config, args.freeze)  # plain models: the freezing rules alone
    mesh = make_mesh()
    unit = "rounds" if opts.update == "round" else "corpus steps"
    if not opts.quiet:  # quiet: what the model starts from, warnings and the results only
        print(f"workdir {workdir}; corpora {', '.join(corpora)}; {count(params, labels):,} trainable "
              f"({count(params, labels) / 1e6:.2f} M) of {count(params) / 1e6:.2f} M params; {mesh.size} device(s); "
              f"{opts.steps} {unit}, batch {opts.batch_size}, max {opts.max_seconds} s, lr {opts.lr:g} "
              f"({opts.schedule}), eval every {opts.eval_every}, dtype {args.dtype}, input {opts.input_mode}",
              flush=True)
    # examples without a hard label (prepare --keep-no-majority) train with --targets soft only, and never validate
    train_sources = {n: c.split("train") if opts.targets == "soft" else c.split("train").hard_labelled()
                     for n, c in corpora.items()}
    val_sources = {n: c.split("validation").hard_labelled() for n, c in corpora.items()}
    run_info = dict(stage=args.stage, init=init, freeze=args.freeze, adapters=list(model.config.adapters),
                    dtype=args.dtype, remat=args.remat, task=args.task,
                    trainable_params=count(params, labels), total_params=count(params))
    result = train(model, params, labels, train_sources, val_sources, workdir, opts, mesh=mesh, run_info=run_info)
    if not opts.quiet:
        print(f"compiled the train step {result.compiles} time(s) for bucket shapes "
              f"{sorted(set(result.bucket_shapes))}")
    if result.state.skipped and jax.process_index() == 0:  # the others print nowhere
        print(f"warning: skipped {int(result.state.skipped)} step(s) with a non-finite loss or gradient",
              file=sys.stderr)
    step = int(result.state.step)
    what = score_name(model.config)
    print("\n" + uar_table(result.final_uar, f"validation {what} (step {step})", result.val_caveats))
    if result.best:
        print(f"\nbest mean validation {what} {result.best['mean']:.4f} at step {result.best['step']} -> {workdir}/best")
    print(f"final model -> {workdir}/final")
    return 0


def with_layerdrop(args, model):
    """The model with --layerdrop's probability; without it, a gated model (the released ExHuBERT's layout) whose
    config says LayerDrop above 0 is refused, since its authors' code never drops a layer (skip_the_layer = False)."""
    from exhubert_jax.adapters import with_config

    config, given = model.config, getattr(args, "layerdrop", None)
    if given is not None:
        return with_config(model, config.replace(layerdrop=given))
    if config.expansion_style == "gated" and config.layerdrop > 0:
        raise UsageError(f"the model has the gated layout (the released ExHuBERT's) and LayerDrop {config.layerdrop}, "
                         "but its authors trained it without (their code never drops a layer): pass --layerdrop 0 to "
                         f"train as they did, or --layerdrop {config.layerdrop} to keep it")
    return model


def with_adapters(args, model, params):
    """(model, params) with the --adapter specs applied in order (pure functions; identity at initialisation)."""
    if not args.adapter:
        return model, params
    from exhubert_jax.adapters import apply_spec, with_config

    params, config, _ = apply_spec(params, model.config, args.adapter, seed=args.seed)
    print(f"adapters: {', '.join(args.adapter)}")
    return with_config(model, config), params


def check_task(task: str, corpora: dict) -> None:
    """A dimensional task needs at least one corpus with dimensional labels."""
    if task != "categorical" and not any(c.info.get("dimensions") for c in corpora.values()):
        raise UsageError(f"--task {task} needs a corpus with arousal/valence/dominance labels; none of "
                         f"{', '.join(corpora)} has them (prepare one from a reader or manifest that gives them)")


def check_balance(args, corpora: dict, demo: bool) -> None:
    """--class-weights, --sampling and --corpus-weights against the run, before a model is built: the task has classes
    to balance, the update rule a round to weigh corpora in, and a weights file names corpora trained on and their
    classes (an unknown one is named with its file row and the nearest known names)."""
    from exhubert_jax.training.imbalance import class_weight_table, corpus_weight_table

    opts = train_options(args, demo)
    opts.validate()
    given = [f for f, on in (("--class-weights", opts.class_weights != "none"),
                             ("--sampling balanced", opts.sampling != "natural")) if on]
    if args.task == "dimensional" and given:
        raise UsageError(f"--task dimensional trains no classes, so {given[0]} has nothing to balance; leave it out "
                         "or use --task both")
    splits = {n: c.split("train") for n, c in corpora.items()}
    class_weight_table(args.class_weights, splits, opts.label_space)  # the flag's own text: a file's rows are named
    corpus_weight_table(args.corpus_weights, splits)


def demo_notice(names: list[str], data_dir: Path, init: str | None) -> str:
    """The NOTICE of an embedded-demo run: its corpora, the model it starts from (a tiny random-init one with the
    demo's model overrides, or --init's) and the demo defaults that apply."""
    if init:
        model, defaults, overrides = f"the model of --init {init}", {k: v for k, v in DEMO.items() if k != "preset"}, ""
    else:
        model, defaults, overrides = "tiny model, random init", DEMO, f" and model overrides {DEMO_OVERRIDES}"
    return (f"NOTICE: no --corpora given and no real corpora prepared in {data_dir}: training the embedded demo "
            f"(synthetic corpora {', '.join(names)}, {model}) with demo defaults {defaults}{overrides}. Flags "
            "override them.")


def stage_finetune(args) -> int:
    """Multi-corpus round-robin fine-tuning with the 6-class head, a regression head (--task dimensional) or both."""
    from exhubert_jax.adapters import with_config
    from exhubert_jax.model.heads import heads_for_task

    data_dir = data_dir_of(args)
    names, demo = finetune_corpora(args.corpora, data_dir)
    if demo and args.corpora is None:
        print(demo_notice(names, data_dir, args.init), flush=True)
    if demo:
        ensure_demo(data_dir)
    if not demo and not args.init and not args.random_init:
        raise UsageError(f"--stage finetune on real corpora needs --init DIR; {CONVERT_HINT}")
    corpora = open_corpora(names, data_dir)
    warn_leakage(corpora, data_dir)
    check_task(args.task, corpora)
    check_balance(args, corpora, demo)
    check_targets(corpora, train_options(args, demo).targets, args.task)  # before a model is built
    model, params = load_model(args, args.init, demo and not args.init)
    params, config = heads_for_task(params, model.config, args.task, EMOTION_CLASSES, args.seed)
    model, params = with_adapters(args, with_config(model, config), params)
    return run_training(args, model, params, corpora, train_options(args, demo), default_workdir(args), args.init)


def stage_expand(args) -> int:
    """Backbone Block Expansion of a fine-tuned checkpoint, saved to {workdir}/final."""
    from exhubert_jax import save_pretrained
    from exhubert_jax.model.expansion import expand
    from exhubert_jax.model.param_labels import count
    from exhubert_jax.training import run_record as runconfig

    init = expand_init(args)
    model, params = load_model(args, init, demo=False)
    new_params, new_config, labels = expand(params, model.config, copies=args.copies, style=args.style,
                                            freeze=args.freeze)
    workdir = default_workdir(args)
    out = save_pretrained(workdir / "final", new_config, new_params)
    runconfig.write(workdir, dict(stage="expand", init=init, copies=args.copies, style=args.style,
                                  freeze=args.freeze))
    print(f"expanded {init}: {model.config.num_hidden_layers} -> {new_config.total_layers} layers ({args.style}, "
          f"{args.copies} cop{'y' if args.copies == 1 else 'ies'}, freeze {args.freeze}): "
          f"{count(new_params, labels) / 1e6:.2f} M trainable of {count(new_params) / 1e6:.2f} M -> {out}")
    return 0


def stage_transfer(args) -> int:
    """Fine-tune a (plain or expanded) model on one corpus; writes the validation-UAR curve as a PNG."""
    from exhubert_jax.adapters import with_config
    from exhubert_jax.data.loading.resolve import group_of, resolve_corpora
    from exhubert_jax.model.heads import heads_for_task

    if not args.corpus:
        raise UsageError("--stage transfer needs --corpus NAME")
    data_dir = data_dir_of(args)
    names = resolve_corpora(args.corpus, data_dir)
    if len(names) != 1:
        raise UsageError(f"--corpus takes one corpus, got {', '.join(names)}")
    corpora = open_corpora(names, data_dir)
    warn_leakage(corpora, data_dir)
    demo = group_of(names[0]) == "demo"
    init = transfer_init(args, demo)
    check_task(args.task, corpora)
    check_balance(args, corpora, demo)
    check_targets(corpora, train_options(args, demo).targets, args.task)  # before a model is built
    model, params = load_model(args, init, demo=demo)
    classes = tuple(corpora[names[0]].native_labels) if args.labels == "native" else EMOTION_CLASSES
    params, config = heads_for_task(params, model.config, args.task, classes, args.seed)
    model, params = with_adapters(args, with_config(model, config), params)
    opts = train_options(args, demo, curve_png=True)
    workdir = default_workdir(args)
    code = run_training(args, model, params, corpora, opts, workdir, init)
    print(f"validation UAR curve -> {workdir / 'uar_curve.png'}")
    return code


def open_corpora(names: list[str], data_dir: Path) -> dict[str, Any]:
    """{name: PreparedCorpus}."""
    from exhubert_jax.data.loading.dataset import open_prepared

    return {n: open_prepared(n, data_dir) for n in names}


def warn_leakage(corpora: dict, data_dir: Path) -> None:
    """One stderr line when a validation or test file of any corpus prepared in data_dir (the unseen test corpora
    are evaluated later) has the same audio as one of the run's training files, or when a corpus could not be
    checked; the prepared indexes' PCM digests alone, no audio is read."""
    import jax

    from exhubert_jax.data.audit.exact import leak_warning

    line = leak_warning({n: c.info.get("index", {}) for n, c in corpora.items()}, data_dir)
    if line and jax.process_index() == 0:
        print(line, file=sys.stderr, flush=True)


STAGES = dict(finetune=stage_finetune, expand=stage_expand, transfer=stage_transfer)
