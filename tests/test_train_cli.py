"""End to end through train.py and evaluate.py: demo corpora -> finetune -> expand -> transfer -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from exhubert_jax.evaluation.metrics import METRICS

import train as cli
from exhubert_jax import from_pretrained
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.loading.dataset import open_prepared

FAST = ["--steps", "6", "--batch-size", "4", "--max-seconds", "0.5", "--eval-every", "3", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Small synthetic demo corpora, prepared once for this module."""
    path = tmp_path_factory.mktemp("prepared")
    prepare_demo(path, n_per_class=1, n_speakers=4, log=lambda s: None)
    return path


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """Workdirs of a finetune -> expand -> transfer chain run through the CLI."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--data-dir", str(data_dir)]
    codes = {
        "finetune": cli.main(["--stage", "finetune", *common, "--workdir", str(root / "ft"), *FAST]),
        "expand": cli.main(["--stage", "expand", "--init", str(root / "ft" / "best"), "--workdir", str(root / "ex")]),
        "transfer": cli.main(["--stage", "transfer", "--corpus", "demo-b", "--labels", "native", *common,
                              "--init", str(root / "ex" / "final"), "--workdir", str(root / "tr"), *FAST]),
    }
    return root, codes


def test_finetune_writes_best_final_metrics_and_table(runs, capsys):
    root, codes = runs
    assert codes["finetune"] == 0
    ft = root / "ft"
    best = json.loads((ft / "best.json").read_text())
    assert best["step"] in (3, 6) and set(best) >= {"demo-a", "demo-b", "demo-c", "mean"}
    model, params = from_pretrained(ft / "final")
    assert model.config.num_labels == 6 and model.config.label_names[0] == "low_negative"
    events = [json.loads(l) for l in (ft / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6] and all(0 <= e["uar/mean"] <= 1 for e in evals)
    assert list((ft / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (ft / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]


def test_expand_then_transfer_with_native_head(runs, data_dir):
    root, codes = runs
    assert codes["expand"] == 0 and codes["transfer"] == 0
    ex_model, ex_params = from_pretrained(root / "ex" / "final")
    assert ex_model.config.expansion_copies == 1 and ex_model.config.expansion_style == "zll"
    assert not np.any(np.asarray(ex_params["hubert"]["encoder"]["expansion"]["zll"]["kernel"]))
    tr_model, tr_params = from_pretrained(root / "tr" / "final")
    native = open_prepared("demo-b", data_dir).native_labels
    assert tr_model.config.label_names == tuple(native)
    assert tr_model.config.expansion_copies == 1
    # the frozen original layers did not move during transfer; the copies did
    orig = lambda p: p["hubert"]["encoder"]["layers"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(orig(ex_params)), jax.tree.leaves(orig(tr_params))))
    assert (root / "tr" / "uar_curve.png").stat().st_size > 1000


def test_evaluate_after_each_stage(runs, data_dir, capsys):
    import evaluate
    root, _ = runs
    capsys.readouterr()
    assert evaluate.main(["--corpus", "demo", "--checkpoint", str(root / "ex"), "--data-dir", str(data_dir),
                          "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["corpus"] for r in doc["results"]] == ["demo-a", "demo-b", "demo-c"]
    assert all(0.0 <= r["uar"] <= 1.0 and r["n"] > 0 for r in doc["results"])
    assert evaluate.main(["--corpus", "demo-b", "--checkpoint", str(root / "tr"), "--data-dir", str(data_dir),
                          "--labels", "native"]) == 0
    out = capsys.readouterr().out
    assert "| demo-b |" in out and (root / "tr" / "best" / "eval" / "demo-b-test-masked-native"
                                           / "confusion_demo-b.png").exists()


def test_evaluate_compares_runs_like_table_2(runs, data_dir, capsys):
    import evaluate
    root, _ = runs
    capsys.readouterr()
    (root / "cmp").mkdir(exist_ok=True)
    if not (root / "cmp" / "transfer-demo-b").exists():
        (root / "cmp" / "transfer-demo-b").symlink_to(root / "tr")  # a run folder holding a transfer run
    assert evaluate.main(["--corpus", "demo-b", "--checkpoint", f"{root / 'ft'},{root / 'cmp'}",
                          "--data-dir", str(data_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cells = {c["column"]: c for c in doc["cells"]}
    assert cells[str(root / "cmp")]["label_space"] == "native" and cells[str(root / "ft")]["label_space"] == "emotion"
    assert cells[str(root / "cmp")]["checkpoint"].startswith(str(root / "cmp" / "transfer-demo-b"))
    ft_run = json.loads((root / "ft" / "run.json").read_text())
    assert doc["trainable_parameters"][str(root / "ft")] == ft_run["trainable_params"]
    blocks = doc["table"].split("\n\n")  # one Table 2 per registered metric, each under its heading
    assert blocks[0] == "UAR (%)" and [b for b in blocks[::2]][:len(METRICS)] == [m.heading for m in METRICS.values()]
    lines = blocks[1].splitlines()
    assert lines[0] == f"| Dataset | {root / 'ft'} | {root / 'cmp'} |" and lines[2].startswith("| demo-b | ")
    assert lines[-2].startswith("| **Average UAR over all datasets** |")
    assert lines[-1].startswith("| Number of trainable parameters |") and lines[-1].endswith(" M |")


def test_demo_models_carry_a_caveat_and_name_their_checkpoint(runs, data_dir, capsys):
    import evaluate
    root, _ = runs
    capsys.readouterr()
    assert evaluate.main(["--corpus", "demo-a", "--checkpoint", str(root / "ft"), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"Checkpoint `{root / 'ft' / 'best'}`" in out and "trained only on the synthetic demo corpora" in out


def test_rerun_resumes_and_finishes_immediately(runs, data_dir, capsys):
    root, _ = runs
    code = cli.main(["--stage", "finetune", "--data-dir", str(data_dir), "--workdir", str(root / "ft"), *FAST])
    out = capsys.readouterr().out
    assert code == 0 and "resuming from" in out and "| **mean** |" in out


@pytest.mark.parametrize("argv, message", [
    (["--corpora", "nope"], "corpus nope is not prepared"),
    (["--corpora", "emoset"], "none of the emoset corpora"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--init", "/nonexistent/ckpt"], "--init /nonexistent/ckpt: checkpoint directory /nonexistent/ckpt does not exist"),
    (["--stage", "transfer"], "needs --corpus"),
])
def test_user_errors_exit_2_with_a_clear_message(argv, message, data_dir, tmp_path, capsys):
    code = cli.main(["--data-dir", str(data_dir), "--workdir", str(tmp_path / "w"), *FAST, *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_expand_never_guesses_its_input(runs, tmp_path, capsys, monkeypatch):
    root, _ = runs
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--stage", "expand"]) == 2
    assert "needs --init DIR" in capsys.readouterr().err and not (tmp_path / "runs" / "expand").exists()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "finetune").symlink_to(root / "ft")  # a demo fine-tune: named, not used silently
    assert cli.main(["--stage", "expand"]) == 2
    assert "trained on the synthetic demo corpora; pass --init" in capsys.readouterr().err


def test_adapter_flag_trains_only_the_adapter_and_head(data_dir, tmp_path):
    work = tmp_path / "lora"
    assert cli.main(["--data-dir", str(data_dir), "--workdir", str(work), "--adapter", "lora:r=2,targets=q+v", *FAST]) == 0
    model, _ = from_pretrained(work / "final")
    assert model.config.adapters and model.config.adapters[0].startswith("lora")
    run = json.loads((work / "run.json").read_text())
    assert run["adapters"] == list(model.config.adapters) and run["trainable_params"] < run["total_params"] / 4


def test_flags_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--step", "5"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --step 5" in capsys.readouterr().err


def test_real_corpora_need_an_init(data_dir, tmp_path, capsys):
    real = tmp_path / "prepared"
    real.mkdir()
    (real / "emodb").symlink_to(data_dir / "demo-a")  # any prepared corpus under a registry name of real speech
    code = cli.main(["--data-dir", str(real), "--corpora", "emodb", "--workdir", str(tmp_path / "w"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "needs --init DIR" in err and "converters.torch_to_flax" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_embedded_demo_learns_well_above_chance(tmp_path, monkeypatch, capsys):
    """`python train.py --stage finetune` on a fresh clone: demo corpora prepared and learned (chance = 1/6)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXHUBERT_DATA", raising=False)
    assert cli.main(["--stage", "finetune", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "NOTICE: no --corpora given" in out and (tmp_path / "data" / "prepared" / "demo-a" / "info.json").is_file()
    final = json.loads((tmp_path / "runs" / "finetune" / "final.json").read_text())
    assert final["mean"] >= 0.5, final


@pytest.mark.parametrize("argv, message", [
    (["--stage", "expand", "--adapter", "lora:r=8", "--steps", "20"], "--steps does nothing with --stage expand"),
    (["--stage", "expand", "--corpora", "demo"], "--corpora does nothing with --stage expand; it is used by --stage "
                                                 "finetune"),
    (["--stage", "finetune", "--copies", "2", "--style", "zero_out"], "--copies does nothing with --stage finetune"),
    (["--stage", "finetune", "--labels", "emotion"], "--labels does nothing with --stage finetune"),
])
def test_a_flag_the_stage_does_not_use_is_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def never(*args, **kwargs):
    """Stands in for building a model or reading data where a test must see neither happen."""
    raise AssertionError("a model was built or data read before the flags were checked")


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--adapter", "lora:r=8,rank=4"], ("--adapter lora:r=8,rank=4: adapter 'lora': rank and r name the same "
                                        "option; give it once")),
    (["--adapter", "lora:alpha=inf"], ("--adapter lora:alpha=inf: adapter 'lora' option 'alpha' must be a finite "
                                       "number (float), got 'inf'")),
    (["--task-weights", "categorical=x"], "--task-weights: categorical needs a number, got 'x'"),
    (["--warmup-steps", "-1"], "--warmup-steps must not be negative, got -1"),
    (["--init", "no/such/dir"], "--init no/such/dir: checkpoint directory no/such/dir does not exist"),
    (["--warmup-steps", "400", "--steps", "400"], ("--warmup-steps 400 leaves no update after the warm-up: it must "
                                                   "be fewer than --steps 400")),
    (["--stage", "expand", "--copies", "0"], "--copies must be at least 1, got 0"),
    (["--augment", "noise:snr=20-5"], ("--augment noise:snr=20-5: snr must be a number or a range LO-HI (LO <= HI), "
                                       "got '20-5'")),
    (["--augment", "gain", "--augment", "gain:db=3"], ("--augment: augmentation kind(s) gain given more than once; "
                                                       "give each kind once")),
    (["--augment", "reverb", "--rir-dir", "no/such/folder"], ("--rir-dir must be a folder holding audio files (.wav, "
                                                               ".flac, .ogg, .mp3, .opus, .m4a, .aiff, .aif, .au), got "
                                                               "'no/such/folder'")),
])
def test_a_bad_flag_value_is_refused_before_any_model_or_data(argv, message, tmp_path, monkeypatch, capsys):
    """One error line, and nothing else printed (no demo NOTICE), before a model is built or a corpus read."""
    from exhubert_jax.training import stages

    for name in ("finetune_corpora", "ensure_demo", "open_corpora", "load_model", "expand_init"):
        monkeypatch.setattr(stages, name, never)
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == [f"error: {message}"]


def test_the_demo_notice_says_what_a_run_from_init_starts_from(data_dir, tmp_path, monkeypatch, capsys):
    """--init on the demo corpora: the NOTICE names the checkpoint, never a tiny random-init model."""
    from exhubert_jax.errors import ExhubertError
    from exhubert_jax.training import stages

    def stop(*args, **kwargs):
        raise ExhubertError("stopped before the model loads")

    monkeypatch.setattr(stages, "load_model", stop)
    init = str(tmp_path / "demo" / "best")
    Path(init).mkdir(parents=True)
    assert cli.main(["--data-dir", str(data_dir), "--init", init, "--adapter", "lora:r=8"]) == 2
    notice = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("NOTICE"))
    assert f"(synthetic corpora demo-a, demo-b, demo-c, the model of --init {init})" in notice
    assert "random init" not in notice and "tiny" not in notice and "model overrides" not in notice
    assert "random init" in stages.demo_notice(["demo-a"], data_dir, None)


def test_conflicting_adapter_option_aliases_are_refused():
    from exhubert_jax.adapters.registry import AdapterSpecError, normalise, parse_spec

    with pytest.raises(AdapterSpecError, match="rank and r name the same option"):
        normalise(*parse_spec("lora:r=8,rank=4"))
