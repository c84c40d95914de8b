"""A sweep: a grid of train.py options over one base config, run by the protocol runner (resumable), reported in one
table with every registered metric and a paired test of each cell against the baseline cell."""

import json
from pathlib import Path

import pytest

from exhubert_jax.evaluation.metrics import METRICS
from exhubert_jax.protocols import runs, sweep
from exhubert_jax.protocols.runs import ProtocolError
from exhubert_jax.process.options import OptionsError


def test_the_grid_is_every_combination_in_order():
    cells = sweep.grid_cells({"lr": [0.1, 0.2], "batch_size": [4, 8], "seed": 3})
    assert [sweep.cell_name(c) for c in cells] == [
        "lr=0.1,batch_size=4,seed=3", "lr=0.1,batch_size=8,seed=3", "lr=0.2,batch_size=4,seed=3",
        "lr=0.2,batch_size=8,seed=3"]
    with pytest.raises(ProtocolError, match="grid is empty"):
        sweep.grid_cells({})


def test_options_become_train_py_flags_checked_as_its_config_checks_them():
    argv = sweep.train_argv({"stage": "transfer", "corpus": "a", "quiet": True, "remat": False,
                             "adapter": ["lora", "ia3"], "task_weights": [1.0, 0.5], "lr": 0.01}, "s.yaml")
    assert argv == ["--stage", "transfer", "--corpus", "a", "--quiet", "--adapter", "lora", "--adapter", "ia3",
                    "--task-weights", "categorical=1.0,dimensional=0.5", "--lr", "0.01"]
    with pytest.raises(OptionsError, match="unknown key 'stepz'; did you mean steps"):
        sweep.train_argv({"stepz": 3}, "s.yaml")
    with pytest.raises(OptionsError, match="--update must be one of"):
        sweep.train_argv({"update": "never"}, "s.yaml")
    with pytest.raises(ProtocolError, match="workdir"):
        sweep.sweep_runs({"workdir": "x"}, [{"lr": 1}], "a", Path("w"), None, "s.yaml")


def fake_result(preds):
    """A test evaluation as protocols.runs.evaluate_stage returns it."""
    targets = [0, 0, 1, 1, 2, 2, 0, 1]
    return {"corpus": "demo-a", "checkpoint": "x", "label_space": "emotion", "uar": 0.0, "n": len(targets),
            "class_names": ["a", "b", "c"], "targets": targets, "preds": preds, "caveat": None}


def test_a_sweep_runs_every_cell_once_and_reports_each_against_the_baseline(tmp_path, monkeypatch):
    trained = []
    predictions = {"lr=0.1,batch_size=4": [0, 0, 1, 1, 2, 2, 0, 1], "lr=0.1,batch_size=8": [0, 1, 1, 1, 2, 0, 0, 1],
                   "lr=0.2,batch_size=4": [1, 1, 1, 1, 1, 1, 1, 1], "lr=0.2,batch_size=8": [0, 0, 1, 2, 2, 2, 0, 1]}

    def fake_train(argv):
        trained.append(Path(argv[argv.index("--workdir") + 1]).name)
        return 0

    monkeypatch.setattr("exhubert_jax.cli.train.main", fake_train)
    monkeypatch.setattr(runs, "evaluate_stage", lambda stage, *a: fake_result(predictions[stage.workdir.name]))
    config = tmp_path / "sweep.yaml"
    config.write_text(f"corpus: demo-a\nworkdir: {tmp_path / 'w'}\nbootstrap: 200\nbaseline: lr=0.2,batch_size=8\n"
                      "base: {stage: finetune, corpora: demo-a, steps: 5, quiet: true}\n"
                      "grid: {lr: [0.1, 0.2], batch_size: [4, 8]}\n")
    doc = sweep.run_sweep(config, say=lambda m: None)
    assert trained == list(predictions)
    lines = doc["table"].splitlines()
    assert len(lines) == 2 + 4 and all(METRICS[m].heading in lines[0] for m in METRICS)
    assert lines[-1].startswith("| lr=0.2,batch_size=8 |") and lines[-1].count("baseline") == len(METRICS)
    assert set(doc["paired"]) == set(predictions) - {"lr=0.2,batch_size=8"}
    assert all(set(row["metrics"]) == set(METRICS) for row in doc["paired"].values())
    assert "| lr=0.1,batch_size=4 | 100.0 |" in doc["table"]
    assert (tmp_path / "w" / "sweep.md").read_text().endswith(doc["table"] + "\n")
    again = sweep.run_sweep(config, say=lambda m: None)  # resumed: every cell is done, nothing trains again
    assert trained == list(predictions) and again["table"] == doc["table"]
    with pytest.raises(ProtocolError, match="baseline 'lr=9' is not a cell"):
        sweep.run_sweep(config, {"baseline": "lr=9"}, say=lambda m: None)


@pytest.mark.slow
def test_a_2x2_sweep_over_the_demo_runs_from_one_file_and_prints_one_table(tmp_path, capsys):
    from exhubert_jax.data.demo.synthetic import prepare_demo
    from exhubert_jax.protocols import runner

    data = tmp_path / "data"
    prepare_demo(data, n_per_class=1, n_speakers=4, log=lambda s: None)
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"corpus": "demo-a", "workdir": str(tmp_path / "w"), "data_dir": str(data),
                                  "bootstrap": 100, "base": {"stage": "finetune", "corpora": "demo-a", "steps": 2,
                                                             "eval_every": 2, "quiet": True},
                                  "grid": {"lr": [0.001, 0.002], "batch_size": [2, 4]}}))
    assert runner.main(["sweep", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("| cell |"):].split("\n\n")[0].splitlines()
    assert len(table) == 6 and table[2].startswith("| lr=0.001,batch_size=2 |") and "baseline" in table[2]
