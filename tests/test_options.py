"""Each train.py option declared once (exhubert_jax.training.options, exhubert_jax.training.stage_flags): the parser, validate(), the
stage defaults, the stage refusal, run.json's options and the resumable options all come from the declaration."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

import options_snapshot
import train as cli
from exhubert_jax.process.options import OptionsError
from exhubert_jax.training import run_record as runconfig, stages
from exhubert_jax.training.options import (NON_NEGATIVE, STAGE_NAMES, TRAINING, TrainOptions, add_flags, dest_of,
                                           flag_of, from_args, option, resumable, run_options, specs, stage_defaults,
                                           unused_flag)
from exhubert_jax.training.stage_flags import StageFlags
from exhubert_jax.training.step import TrainError

def parser_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of the parser but --help."""
    return [s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")]


def test_the_options_are_the_snapshot():
    """Flags, their defaults and choices, and run.json's keys, as tests/options_snapshot.json records them; after a
    change on purpose, `python tests/options_snapshot.py` rewrites it."""
    assert options_snapshot.current() == json.loads(options_snapshot.SNAPSHOT.read_text()), (
        "the declared options differ from tests/options_snapshot.json: if on purpose, run "
        "`python tests/options_snapshot.py` and review its diff")


def test_the_parser_is_the_declared_flags_each_once():
    declared = [flag_of(f) for cls in (StageFlags, TrainOptions) for f, _ in specs(cls) if flag_of(f)]
    got = parser_flags(cli.build_parser())
    assert sorted(got) == sorted(declared + ["--config"]) and len(set(got)) == len(got)
    assert {f.name for f, _ in specs(TrainOptions)} == {f.name for f in dataclasses.fields(TrainOptions)}
    named = {f.name: (flag_of(f), dest_of(f)) for f in dataclasses.fields(TrainOptions)}
    assert named["label_space"] == ("--labels", "labels") and named["input_mode"] == ("--input", "input")
    assert named["log_every"] == (None, None)  # an API-only option has no flag


def test_choices_come_from_the_library():
    from exhubert_jax.evaluation.dimensional import LOSSES
    from exhubert_jax.model.config import INPUT_MODES, LABEL_SPACES
    from exhubert_jax.training.optimizer import SCHEDULES
    from exhubert_jax.training.update_rules import UPDATES

    choices = {a.dest: a.choices for a in cli.build_parser()._actions}
    assert (choices["schedule"], choices["input"], choices["labels"], choices["dim_loss"], choices["update"]) == (
        SCHEDULES, INPUT_MODES, LABEL_SPACES, LOSSES, UPDATES)
    assert tuple(stages.STAGES) == choices["stage"]


BAD = [  # (field, value, flag): every checked option, each with a value that cannot work
    ("steps", 0, "--steps"), ("batch_size", 0, "--batch-size"), ("eval_every", 0, "--eval-every"),
    ("accumulate", 0, "--accumulate"), ("keep", 0, "--keep"), ("max_bad_steps", 0, "--max-bad-steps"),
    ("log_every", 0, "log_every"), ("checkpoint_every", 0, "checkpoint_every"), ("patience", 0, "--patience"),
    ("lr", -1.0, "--lr"), ("lr", 0.0, "--lr"), ("weight_decay", -0.5, "--weight-decay"),
    ("max_seconds", 0.01, "--max-seconds"), ("clip_norm", 0.0, "--clip-norm"), ("update", "sometimes", "--update"),
    ("schedule", "step", "--schedule"), ("label_space", "nativ", "--labels"), ("input_mode", "x", "--input"),
    ("task_weights", (0.0, 0.0), "--task-weights"), ("task_weights", (1.0, -1.0), "--task-weights"),
    ("dim_loss", "mae", "--dim-loss"), ("warmup_steps", -1, "--warmup-steps"), ("lr", float("inf"), "--lr"),
    ("sampling", "stratified", "--sampling"), ("class_weights", "weights.csv", "--class-weights"),
    ("corpus_weights", "sizes", "--corpus-weights"), ("targets", "probabilities", "--targets"),
    ("augment", ("echo",), "--augment"), ("noise_dir", "no/such/folder", "--noise-dir"),
    ("rir_dir", "no/such/folder", "--rir-dir"),
]


@pytest.mark.parametrize("field, value, flag", BAD)
def test_a_bad_value_names_its_flag_and_the_value(field, value, flag):
    with pytest.raises(TrainError) as error:
        TrainOptions(**{field: value}).validate()
    assert str(error.value).startswith(f"{flag} ") and str(error.value).endswith(f", got {value!r}")


def test_every_checked_option_is_tried_above_and_the_defaults_pass():
    checked = {f.name for f, spec in specs(TrainOptions) if spec.check or spec.choices}
    assert checked == {field for field, _, _ in BAD}
    TrainOptions().validate()
    TrainOptions(patience=None, clip_norm=None, checkpoint_every=None, stop_after=None).validate()


def test_a_bad_flag_on_the_command_line_is_named_with_its_value():
    """Refused as it is parsed, before a stage builds or reads anything."""
    with pytest.raises(OptionsError, match=r"^--weight-decay must not be negative, got -1.0$"):
        cli.parse_args(["--stage", "transfer", "--corpus", "demo-b", "--input", "card", "--weight-decay", "-1"])


def test_stage_defaults_are_the_papers_the_demos_and_transfers():
    assert stages.PAPER == dict(steps=3000, batch_size=8, max_seconds=3.0, lr=1e-5, eval_every=500, preset="large")
    assert stages.DEMO == dict(steps=400, batch_size=8, max_seconds=1.0, lr=2e-3, eval_every=50, preset="tiny")
    assert stages.TRANSFER_STEPS == 10000
    assert stage_defaults("transfer", TrainOptions, StageFlags) == {**stages.PAPER, "steps": 10000}


@pytest.mark.parametrize("argv, demo, expected", [
    (["--stage", "finetune"], False, dict(steps=3000, lr=1e-5, max_seconds=3.0, eval_every=500, label_space="emotion")),
    (["--stage", "finetune"], True, dict(steps=400, lr=2e-3, max_seconds=1.0, eval_every=50, label_space="emotion")),
    (["--stage", "transfer", "--corpus", "x"], False, dict(steps=10000, lr=1e-5, eval_every=500,
                                                           label_space="native")),
    (["--stage", "transfer", "--corpus", "x"], True, dict(steps=400, lr=2e-3, eval_every=50, label_space="native")),
    (["--steps", "20", "--lr", "0.1", "--task-weights", "dimensional=0.5", "--input", "card"], True,
     dict(steps=20, lr=0.1, eval_every=20, task_weights=(1.0, 0.5), input_mode="card", batch_size=8)),
    (["--stage", "transfer", "--corpus", "x", "--labels", "emotion", "--quiet", "--seed", "3"], False,
     dict(label_space="emotion", quiet=True, seed=3)),
])
def test_train_options_from_flags(argv, demo, expected):
    opts = stages.train_options(cli.parse_args(argv), demo)
    assert {k: getattr(opts, k) for k in expected} == expected


def test_the_stage_table_is_the_former_hand_table():
    former = {**{flag: TRAINING for flag in (
        "data_dir", "random_init", "preset", "steps", "update", "batch_size", "max_seconds", "input", "lr",
        "schedule", "warmup_steps", "weight_decay", "eval_every", "patience", "keep", "clip_norm", "accumulate",
        "max_bad_steps", "adapter", "task", "task_weights", "dim_loss", "class_weights", "sampling",
        "corpus_weights", "targets", "augment", "noise_dir", "rir_dir", "layerdrop")},
        "corpora": ("finetune",), "corpus": ("transfer",), "labels": ("transfer",),
        "copies": ("expand",), "style": ("expand",)}
    table = {dest_of(f): spec.stages for cls in (StageFlags, TrainOptions) for f, spec in specs(cls)
             if dest_of(f) and spec.stages != STAGE_NAMES}
    assert table == former


def test_resumable_options_are_as_before():
    assert runconfig.RESUMABLE == {"eval_every", "checkpoint_every", "keep", "quiet", "log_every", "stop_after",
                                   "max_bad_steps", "curve_png"}


def document(opts: TrainOptions) -> dict:
    """A run.json document of these options (no model, no corpora)."""
    return runconfig.build(run_options(opts), {}, {})


def test_an_old_run_json_resumes_and_a_change_names_its_flag():
    opts = TrainOptions(task_weights=(1.0, 0.5), label_space="native")
    old = dict(options={**dataclasses.asdict(opts), "task_weights": [1.0, 0.5]}, model={}, corpora={})
    assert runconfig.differences(old, document(opts)) == []
    assert runconfig.differences(old, dict(document(opts), options=dataclasses.asdict(opts))) == []  # tuple vs list
    assert runconfig.differences(old, document(dataclasses.replace(opts, keep=9, eval_every=7))) == []
    assert runconfig.differences(old, document(dataclasses.replace(opts, label_space="emotion"))) == [
        "--labels (was 'native', now 'emotion')"]
    assert runconfig.differences(old, document(dataclasses.replace(opts, input_mode="card"))) == [
        "--input (was 'masked', now 'card')"]


@dataclasses.dataclass
class WithEma(TrainOptions):
    """TrainOptions and one more option, declared as the README says: one field."""

    ema: float = option(0.0, type=float, check=NON_NEGATIVE, stages=TRAINING, demo=0.5,
                        help="parameter EMA decay (demo {demo})")


def test_one_declared_field_is_a_flag_a_check_a_stage_default_and_a_run_json_key():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_flags(parser, StageFlags)
    add_flags(parser, WithEma)
    assert parser_flags(parser).count("--ema") == 1
    assert "demo 0.5" in next(a.help for a in parser._actions if a.dest == "ema")
    args = parser.parse_args(["--ema", "0.9"])
    assert from_args(WithEma, args, "paper").ema == 0.9
    assert from_args(WithEma, parser.parse_args([]), "demo").ema == 0.5
    assert from_args(WithEma, parser.parse_args([]), "paper").ema == 0.0
    assert stage_defaults("demo", WithEma)["ema"] == 0.5 and "ema" not in stage_defaults("paper", WithEma)
    with pytest.raises(TrainError, match=r"^--ema must not be negative, got -1.0$"):
        WithEma(ema=-1.0).validate()
    assert run_options(WithEma(ema=0.25))["ema"] == 0.25 and "ema" not in resumable(WithEma)
    refused = unused_flag(parser, parser.parse_args(["--stage", "expand", "--ema", "0.9"]), WithEma, StageFlags)
    assert refused == "--ema does nothing with --stage expand; it is used by --stage finetune and transfer"


def test_a_schedule_added_where_the_readme_says_is_a_choice_that_counts_optimiser_updates(monkeypatch):
    """README: a schedule is one entry of optim.SCHEDULES; train.py's choice, validate() and the optimiser follow."""
    import optax

    from exhubert_jax.training import optimizer as optim
    from exhubert_jax.training.loop import default_optimizer, schedule_for

    monkeypatch.setitem(optim.SCHEDULES, "exponential", lambda lr, n: optax.exponential_decay(lr, n, 0.01))
    args = cli.parse_args(["--schedule", "exponential", "--accumulate", "2", "--steps", "100", "--lr", "0.1"])
    opts = stages.train_options(args, demo=True)
    opts.validate()
    schedule = schedule_for(opts)  # 100 steps of 2 accumulated batches are 50 optimiser updates
    assert float(schedule(0)) == pytest.approx(0.1) and float(schedule(50)) == pytest.approx(0.1 * 0.01)
    assert float(schedule(25)) == pytest.approx(0.1 * 0.1)
    default_optimizer({"w": "trainable"}, opts)  # the optimiser is built on it
    with pytest.raises(SystemExit):
        cli.parse_args(["--schedule", "stepwise"])


def test_a_run_json_written_before_an_option_existed_resumes(tmp_path):
    """A key an older run.json lacks is an option added since: the run had its default, so it resumes; a value
    other than the default is a change and is refused, naming the flag and the default it was."""
    old = document(TrainOptions())
    del old["options"]["dim_loss"]
    (tmp_path / "run.json").write_text(json.dumps(old))
    runconfig.write_or_check(tmp_path, document(TrainOptions()), resuming=True)  # no refusal
    assert runconfig.differences(old, document(TrainOptions(dim_loss="mse"))) == ["--dim-loss (was 'ccc', now 'mse')"]


def test_a_corpus_prepared_again_is_named_with_its_fingerprints_and_what_to_do(tmp_path):
    """Resuming after a training corpus was prepared again names that corpus, its old and new fingerprint and when
    each was prepared; a run.json written before preparation times were recorded still names corpus and both."""
    from types import SimpleNamespace

    from exhubert_jax.training.loop import run_document

    def doc(**corpora):
        """run.json of a run on corpora {name: (fingerprint, prepared_at)}."""
        sources = {n: SimpleNamespace(fingerprint=fp, prepared_at=t) for n, (fp, t) in corpora.items()}
        return run_document(TrainOptions(), SimpleNamespace(to_dict=dict), sources, None)

    first, second = "2025-01-01T10:00:00+00:00", "2025-02-02T09:30:00+00:00"
    started = doc(**{"demo-a": ("a" * 64, first), "demo-b": ("b1" * 32, first)})
    assert started["prepared"] == {"demo-a": first, "demo-b": first}
    runconfig.write(tmp_path, started)
    runconfig.write_or_check(tmp_path, doc(**{"demo-a": ("a" * 64, first), "demo-b": ("b1" * 32, first)}), True)
    again = doc(**{"demo-a": ("a" * 64, first), "demo-b": ("c2" * 32, second)})
    with pytest.raises(runconfig.RunConfigError) as error:
        runconfig.write_or_check(tmp_path, again, resuming=True)
    assert str(error.value) == (
        f"{tmp_path} was started with other settings: corpus demo-b was prepared again since the run started "
        f"(fingerprint was b1b1b1b1b1b1 prepared {first}, now c2c2c2c2c2c2 prepared {second}); prepare it back as it "
        "was, or train into a fresh --workdir")
    older = {k: v for k, v in started.items() if k != "prepared"}  # a run.json from before times were recorded
    assert runconfig.differences(older, again) == [
        (f"corpus demo-b was prepared again since the run started (fingerprint was b1b1b1b1b1b1, now c2c2c2c2c2c2 "
         f"prepared {second})")]
    assert runconfig.differences(older, doc(**{"demo-a": ("a" * 64, None)})) == [
        "corpus demo-b (among the run's corpora, now left out)"]


def test_a_config_file_sets_options_and_flags_win(tmp_path):
    (tmp_path / "c.yaml").write_text("stage: transfer\ncorpus: demo-b\nlr: 0.01\nsteps: 7\nadapter: lora\n")
    (tmp_path / "c.json").write_text(json.dumps({"stage": "transfer", "corpus": "demo-b", "batch-size": 4}))
    args = cli.parse_args(["--config", str(tmp_path / "c.yaml"), "--steps", "9"])
    opts = stages.train_options(args, demo=True)
    assert (args.stage, args.corpus, args.adapter, opts.lr, opts.steps) == ("transfer", "demo-b", ["lora"], 0.01, 9)
    assert stages.train_options(cli.parse_args(["--config", str(tmp_path / "c.json")]), demo=True).batch_size == 4


@pytest.mark.parametrize("text, message", [
    ("stage: finetune\nbatchsize: 4\n", "unknown key 'batchsize'; did you mean batch_size"),
    ("stpes: 3\n", "unknown key 'stpes'; did you mean steps"),
    ("update: sometimes\n", "--update must be one of round, per-corpus, got 'sometimes'"),
    ("steps: many\n", "steps must be int, got 'many'"),
    ("- steps\n", "holds a list, not a mapping"),
    ("steps: [3\n", "not valid YAML"),
])
def test_a_bad_config_file_is_one_line_naming_the_file(tmp_path, text, message):
    from exhubert_jax.process.options import OptionsError

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(OptionsError) as error:
        cli.parse_args(["--config", str(tmp_path / "c.yaml")])
    assert str(error.value).startswith(f"--config {tmp_path / 'c.yaml'}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_config_key_the_stage_does_not_use_is_refused_like_its_flag(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"stage": "expand", "lr": 0.1}))
    with pytest.raises(SystemExit):
        cli.parse_args(["--config", str(tmp_path / "c.json")])
    assert "--lr does nothing with --stage expand" in capsys.readouterr().err


def test_a_run_json_is_a_config_that_runs_the_run_again(tmp_path):
    doc = dict(document(TrainOptions(steps=20, lr=0.5, task_weights=(1.0, 0.5), label_space="native")),
               stage="transfer", init="runs/expand/final", freeze="none", dtype="float32", remat=False, task="both",
               adapters=["lora:r=2,alpha=16,targets=q+v"], corpora={"aesi": "fp"})
    config = runconfig.as_config(doc)
    assert (config["stage"], config["corpus"], config["adapter"]) == ("transfer", "aesi", doc["adapters"])
    assert (config["task"], config["freeze"], config["label_space"]) == ("both", "none", "native")
    assert "log_every" not in config and "curve_png" not in config  # the library's own, no flag
    (tmp_path / "run.json").write_text(json.dumps(doc))
    args = cli.parse_args(["--config", str(tmp_path / "run.json")])
    opts = stages.train_options(args, demo=False)
    assert (args.stage, args.corpus, args.init, args.task) == ("transfer", "aesi", "runs/expand/final", "both")
    assert (opts.steps, opts.lr, opts.task_weights, opts.label_space) == (20, 0.5, (1.0, 0.5), "native")


def test_a_train_split_of_one_class_is_refused_naming_the_corpus_and_its_counts():
    from types import SimpleNamespace

    def corpus(emotion, native):
        return SimpleNamespace(info={"splits": {"train": {"classes": emotion, "native": native}}})

    one = corpus({"low_negative": 4, "high_negative": 0}, {"tone": 4})
    two = corpus({"low_negative": 4, "high_negative": 2}, {"tone": 4, "other": 1})
    stages.check_classes({"two": two}, "emotion", "categorical")
    stages.check_classes({"old": SimpleNamespace(info={})}, "native", "categorical")  # no counts recorded: no check
    stages.check_classes({"toneclass": one}, "native", "dimensional")  # regression needs no classes
    with pytest.raises(stages.UsageError, match=r"^corpus toneclass: its train split holds one class of its native "
                                                r"labels \(tone: 4\); training needs at least two"):
        stages.check_classes({"two": two, "toneclass": one}, "native", "categorical")
    with pytest.raises(stages.UsageError, match=r"one class of its emotion labels \(low_negative: 4\)"):
        stages.check_classes({"toneclass": one}, "emotion", "both")


@pytest.mark.parametrize("text", ['{"options": {"steps": 3', "[1, 2]", "\udcff".encode("utf-8", "surrogatepass")])
def test_a_damaged_run_json_on_resume_is_one_line_naming_it(tmp_path, text):
    path = tmp_path / "run.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(runconfig.RunConfigError) as error:
        runconfig.write_or_check(tmp_path, document(TrainOptions()), resuming=True)
    assert str(error.value).startswith(f"{path} is damaged (") and "\n" not in str(error.value)
    assert path.read_bytes() == (text if isinstance(text, bytes) else text.encode())  # never overwritten


def test_evaluate_says_so_when_a_run_json_is_damaged(tmp_path):
    """A damaged run.json beside a checkpoint is a caveat of its own, never a silent drop of the demo caveat."""
    from exhubert_jax.evaluation.scoring import DEMO_CAVEAT, checkpoint_caveat

    (tmp_path / "best").mkdir()
    assert checkpoint_caveat(tmp_path / "best") is None  # no record: nothing to say
    (tmp_path / "run.json").write_text(json.dumps({"corpora": {"demo-a": "x", "demo-b": "y"}}))
    assert checkpoint_caveat(tmp_path / "best") == DEMO_CAVEAT
    (tmp_path / "run.json").write_text('{"corpora": {"demo-a"')
    caveat = checkpoint_caveat(tmp_path / "best")
    assert caveat.startswith(f"caveat: {tmp_path / 'run.json'} is damaged") and "demo" in caveat
