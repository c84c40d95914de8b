"""The protocol runner: fold and leave-one-corpus-out plans, resume, the summary; end to end on the demo corpora
(slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.prepare.folds import prepare_folds
from exhubert_jax.evaluation import metrics
from exhubert_jax.protocols import runner as protocol, runs as protocol_runs, summary as ps

FAST = ["--steps", "4", "--batch-size", "4", "--max-seconds", "0.5", "--eval-every", "2", "--quiet"]


def fake_prepared(root, *names):
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "info.json").write_text("{}")
    return root


def test_with_flags_replaces_and_appends():
    argv = ["--steps", "6", "--init=a", "--quiet", "--lr", "1"]
    assert protocol.with_flags(argv, steps="2", init="b", data_dir="d") == [
        "--quiet", "--lr", "1", "--steps", "2", "--init", "b", "--data-dir", "d"]


def test_fold_names_resolve_by_prefix_in_fold_order(tmp_path):
    root = fake_prepared(tmp_path, "emodb", *(f"emodb-emobox-fold{n}" for n in (10, 2, 1)), "emodb-fold1of2",
                         "emodb-fold2of2", "x-fold1of2", "x-fold1of3")
    assert protocol.fold_corpora("emodb-emobox", root) == [f"emodb-emobox-fold{n}" for n in (1, 2, 10)]
    assert protocol.fold_corpora("emodb", root) == ["emodb-fold1of2", "emodb-fold2of2"]
    with pytest.raises(protocol.ProtocolError, match="several k-folds are prepared"):
        protocol.fold_corpora("x", root)
    with pytest.raises(protocol.ProtocolError, match="no prepared folds ravdess-foldN.*--emobox DIR"):
        protocol.fold_corpora("ravdess", root)


def test_runs_get_their_own_workdirs_and_flags(tmp_path):
    runs = protocol.fold_runs(["a-fold1of2", "a-fold2of2"], ["--stage", "transfer", "--init", "c"], tmp_path, "d")
    assert [r.stages[0].workdir for r in runs] == [tmp_path / "a-fold1of2", tmp_path / "a-fold2of2"]
    assert runs[1].stages[0].argv[-6:] == ("--corpus", "a-fold2of2", "--workdir", str(tmp_path / "a-fold2of2"),
                                          "--data-dir", "d")
    loco = protocol.loco_runs(["a", "b", "c"], ["b"], ["--init", "c0"], tmp_path, None, 5)
    (zero, transfer), = [r.stages for r in loco]
    assert "--corpora" in zero.argv and zero.argv[zero.argv.index("--corpora") + 1] == "a,c"
    t = dict(zip(transfer.argv[::2], transfer.argv[1::2]))
    assert t["--init"] == str(tmp_path / "without-b" / "finetune" / "best") and t["--corpus"] == "b"
    assert (t["--stage"], t["--labels"], t["--steps"]) == ("transfer", "emotion", "5")
    assert zero.label_space == transfer.label_space == "emotion"
    for bad, message in ((["--workdir", "w"], "--workdir after `--`: the protocol sets it"),
                         (["--stage", "expand"], "--stage expand after `--`")):
        with pytest.raises(protocol.ProtocolError, match=message):
            protocol.fold_runs(["a-fold1of2"], bad, tmp_path, None)


def test_leave_out_must_name_corpora_of_the_protocol(tmp_path):
    root = fake_prepared(tmp_path, "a", "b", "c")
    assert protocol.loco_corpora("a,b,c", "all", root) == (["a", "b", "c"], ["a", "b", "c"])
    assert protocol.loco_corpora("a,b,c", "c,a", root) == (["a", "b", "c"], ["c", "a"])
    with pytest.raises(protocol.ProtocolError, match="--leave-out d: d not among --corpora"):
        protocol.loco_corpora("a,b,c", "d", root)
    with pytest.raises(protocol.ProtocolError, match="needs at least two corpora"):
        protocol.loco_corpora("a", "all", root)


@pytest.mark.parametrize("argv, message", [
    (["folds", "--folds", "c"], "--folds c: no prepared folds c-foldN under"),
    (["folds", "--folds", "b"], "--folds b: a protocol needs at least two folds, found b"),
    (["loco", "--corpora", "a,b", "--leave-out", "c"], "--leave-out c: c not among --corpora (a, b)"),
    (["loco", "--corpora", "a,b", "--transfer-steps", "0"], "--transfer-steps must be at least 1"),
    (["loco", "--corpora", "a,b", "--", "--corpora", "a"], "--corpora after `--`: the protocol sets it"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, argv, message, capsys):
    root = fake_prepared(tmp_path / "data", "a", "b")
    own, rest = (argv[:argv.index("--")], argv[argv.index("--"):]) if "--" in argv else (argv, [])
    code = protocol.main(own + ["--workdir", str(tmp_path / "w"), "--data-dir", str(root)] + rest)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "w").exists()


def result(uar_targets, preds, names):
    return {"uar": metrics.uar(uar_targets, preds, len(names)), "targets": uar_targets, "preds": preds,
            "class_names": names, "n": len(preds)}


def test_summary_mean_sd_and_pooled_uar():
    r1 = result([0, 0, 1, 1], [0, 1, 1, 1], ["sad", "happy"])  # UAR 0.75
    r2 = result([0, 1, 2], [0, 0, 2], ["happy", "neutral", "sad"])  # UAR 2/3; class indices differ from r1's
    runs = [{"run": "f1", "corpus": "c1", "evaluations": {"test": r1}, "test_speakers_disjoint": False},
            {"run": "f2", "corpus": "c2", "evaluations": {"test": r2}, "test_speakers_disjoint": None}]
    s = ps.summarize(runs, ["test"])["test"]
    assert s["mean"] == pytest.approx((0.75 + 2 / 3) / 2) and s["sd"] == pytest.approx(np.std([0.75, 2 / 3], ddof=1))
    # pooled: the 7 utterances by class name
    names = ["happy", "neutral", "sad"]
    y = ["sad", "sad", "happy", "happy", "happy", "neutral", "sad"]
    p = ["sad", "happy", "happy", "happy", "happy", "happy", "sad"]
    assert s["pooled"] == pytest.approx(metrics.uar([names.index(v) for v in y], [names.index(v) for v in p], 3))
    text = ps.table(runs, ["test"], {"test": s}, "fold")
    lo, hi = s["mean_interval"]
    assert lo <= s["mean"] <= hi and s["pooled_interval"][0] <= s["pooled"] <= s["pooled_interval"][1]
    assert f"| mean ± sd (2 runs) | | | | 70.8 ± 5.9 [{100 * lo:.1f}, {100 * hi:.1f}] |" in text
    assert f"| 7 | {100 * s['pooled']:.1f} [" in text
    assert "| f1 | c1 | no | 4 | 75.0 [" in text and "| f2 | c2 | unknown | 3 | 66.7 [" in text
    assert s["runs_intervals"]["f1"] == ps.run_interval(r1, "f1/test")[0]  # deterministic, seeded per run


def test_resume_runs_only_what_is_not_done_and_refuses_another_protocol(tmp_path, monkeypatch):
    calls = []

    def fake_train(argv):
        calls.append(argv[argv.index("--workdir") + 1])
        return 130 if len(calls) == 2 else 0  # the second run is interrupted once

    monkeypatch.setattr("exhubert_jax.cli.train.main", fake_train)
    monkeypatch.setattr(protocol_runs, "evaluate_stage", lambda stage, *a: result([0, 1], [0, 1], ["x", "y"]))
    runs = protocol.fold_runs(["a-fold1of3", "a-fold2of3", "a-fold3of3"], FAST, tmp_path, None)
    with pytest.raises(KeyboardInterrupt):
        protocol.run_protocol("folds", runs, tmp_path, say=lambda m: None)
    assert [Path(c).name for c in calls] == ["a-fold1of3", "a-fold2of3"]
    doc = protocol.run_protocol("folds", runs, tmp_path, say=lambda m: None)
    assert [Path(c).name for c in calls] == ["a-fold1of3", "a-fold2of3", "a-fold2of3", "a-fold3of3"]
    assert doc["summary"]["test"]["mean"] == 1.0 and (tmp_path / "results.md").is_file()
    other = protocol.fold_runs(["a-fold1of3", "a-fold2of3", "a-fold3of3"], FAST + ["--lr", "1"], tmp_path, None)
    with pytest.raises(protocol.ProtocolError, match="differs in the train.py arguments of run a-fold1of3"):
        protocol.run_protocol("folds", other, tmp_path, say=lambda m: None)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The demo corpora (small), and demo-a in 2 speaker folds."""
    path = tmp_path_factory.mktemp("prepared")
    prepare_demo(path, n_per_class=1, n_speakers=4, log=lambda s: None)
    prepare_folds("demo-a", 2, manifest=path / "_demo_sources/demo-a/manifest.csv", out=path, progress=False,
                  log=lambda s: None)
    return path


def interrupt_in(workdir: Path, step: int, monkeypatch):
    """Ctrl-C as training step `step` of the run in workdir starts (once)."""
    from exhubert_jax.training.loop import Trainer

    original, fired = Trainer._train_step, []

    def hooked(self, n):
        if Path(self.workdir) == workdir and n == step and not fired:
            fired.append(n)
            raise KeyboardInterrupt
        return original(self, n)

    monkeypatch.setattr(Trainer, "_train_step", hooked)


@pytest.mark.slow
def test_two_fold_protocol_end_to_end_with_interrupt_and_resume(demo_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "p"
    argv = ["folds", "--folds", "demo-a", "--workdir", str(work), "--data-dir", str(demo_dir), "--", *FAST]
    interrupt_in(work / "demo-a-fold2of2", 3, monkeypatch)
    assert protocol.main(argv) == 130
    assert (work / "demo-a-fold1of2" / protocol.RESULT).is_file()
    assert not (work / "demo-a-fold2of2" / protocol.RESULT).exists()
    first = (work / "demo-a-fold1of2" / protocol.RESULT).stat().st_mtime_ns
    capsys.readouterr()
    assert protocol.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{work / 'demo-a-fold1of2'} done" in out  # not trained again
    assert f"protocol: {work / 'demo-a-fold2of2'}: test UAR " in out
    assert len(out.splitlines()) <= 15 and "step " not in out and "| corpus |" not in out, out  # --quiet: essentials
    evals = [json.loads(line)["step"] for line in (work / "demo-a-fold2of2" / "metrics.jsonl").open()
             if json.loads(line)["event"] == "eval"]
    assert evals == [2, 4]  # resumed from its step-2 checkpoint, not trained again from step 1
    assert (work / "demo-a-fold1of2" / protocol.RESULT).stat().st_mtime_ns == first
    doc = json.loads((work / "results.json").read_text())
    uars = [r["evaluations"]["test"]["uar"] for r in doc["runs"]]
    assert [r["run"] for r in doc["runs"]] == ["demo-a-fold1of2", "demo-a-fold2of2"]
    assert doc["summary"]["test"]["mean"] == pytest.approx(np.mean(uars))
    utts = doc["utterances"]
    assert sum(len(r["evaluations"]["test"]["targets"]) for r in utts) == 24  # every demo-a utterance, once
    assert doc["summary"]["test"]["pooled"] == pytest.approx(ps.pooled_uar([r["evaluations"]["test"] for r in utts]))
    table = (work / "results.md").read_text()
    assert "| mean ± sd (2 runs) |" in table and "| demo-a-fold2of2 | demo-a-fold2of2 | yes | 12 |" in table


@pytest.mark.slow
def test_leave_one_corpus_out_over_the_demo_corpora(demo_dir, tmp_path, capsys):
    work = tmp_path / "loco"
    argv = ["loco", "--corpora", "demo", "--leave-out", "all", "--transfer-steps", "2", "--workdir", str(work),
            "--data-dir", str(demo_dir), "--", *FAST]
    assert protocol.main(argv) == 0
    doc = json.loads((work / "results.json").read_text())
    assert [r["corpus"] for r in doc["runs"]] == ["demo-a", "demo-b", "demo-c"]
    for r in doc["runs"]:
        zero = r["evaluations"]["zero-shot"]
        assert zero["label_space"] == "emotion" and zero["n"] == 6  # demo-X's test split, 6 classes
        plan = json.loads((work / protocol.PLAN).read_text())["runs"][doc["runs"].index(r)]["stages"][0][1]
        assert r["corpus"] not in plan[plan.index("--corpora") + 1].split(",")  # zero-shot: never trained on it
        assert Path(r["evaluations"]["transfer"]["checkpoint"]).parent.name == "transfer"
    for column in ("zero-shot", "transfer"):
        uars = [r["evaluations"][column]["uar"] for r in doc["runs"]]
        assert doc["summary"][column]["mean"] == pytest.approx(np.mean(uars))
    assert "| without-demo-b | demo-b | yes | 6 |" in capsys.readouterr().out


def test_a_protocol_resumes_with_quiet_added_or_dropped(tmp_path):
    """--quiet (and the other flags a resumed train.py run may change) is not part of what makes a protocol; another
    --lr is."""
    from exhubert_jax.protocols.runs import Run, Stage, _plan, check_plan

    def plan(*argv):
        return _plan("folds", [Run("f1", "demo-a", (Stage("test", tuple(argv), tmp_path / "f1", "auto"),))])

    check_plan(tmp_path, plan("--lr", "1", "--quiet", "--eval-every", "5"))
    check_plan(tmp_path, plan("--lr", "1"))
    check_plan(tmp_path, plan("--eval-every=7", "--lr", "1", "--keep", "2"))
    with pytest.raises(protocol.ProtocolError, match="the train.py arguments of run f1"):
        check_plan(tmp_path, plan("--lr", "2", "--quiet"))
