"""Continuous emotion end to end through train.py and evaluate.py on the demo corpora: a both-heads run with task
weights, its evaluation tables, JSON and scatter plots; the dimensional demo's learning check (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evaluate as eval_cli
import train as cli
from exhubert_jax import from_pretrained
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.evaluation.dimensional import DIMENSIONS
from exhubert_jax.training.stages import UsageError, check_task

FAST = ["--steps", "4", "--batch-size", "4", "--max-seconds", "0.5", "--eval-every", "2", "--quiet"]


@pytest.mark.slow  # ~20 s: prepares the demo, trains 4 rounds, evaluates with intervals and plots
def test_both_heads_train_with_task_weights_and_evaluate(tmp_path, capsys):
    data = tmp_path / "prepared"
    prepare_demo(data, n_per_class=1, n_speakers=3, log=lambda s: None)
    work = tmp_path / "both"
    assert cli.main(["--stage", "finetune", "--data-dir", str(data), "--workdir", str(work), "--task", "both",
                     "--task-weights", "categorical=1,dimensional=0.5", *FAST]) == 0
    out = capsys.readouterr().out
    assert "validation UAR and CCC" in out
    model, _ = from_pretrained(work / "final")
    assert (model.config.num_labels, model.config.dimensions) == (6, DIMENSIONS)
    log = (work / "metrics.jsonl").read_text().splitlines()
    compiles = [json.loads(line) for line in log if '"compile"' in line]
    assert compiles[-1]["compiles"] == 1  # the train step compiled once
    evals = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert {"uar/demo-a", "ccc/demo-a"} <= set(evals[-1])
    assert json.loads((work / "run.json").read_text())["options"]["task_weights"] == [1.0, 0.5]

    assert eval_cli.main(["--corpus", "demo", "--checkpoint", str(work), "--data-dir", str(data), "--json",
                          "--bootstrap", "50"]) == 0
    doc = json.loads(capsys.readouterr().out)
    r = doc["results"][0]
    assert set(r["dimensional"]["dims"]) == set(DIMENSIONS) and -1 <= doc["mean_ccc"] <= 1
    assert set(r["dimensional"]["intervals"]) >= {"arousal", "mean_ccc"} and "| arousal |" in doc["table"]
    assert (Path(doc["out"]) / "scatter_demo-a.png").stat().st_size > 1000


def test_a_dimensional_task_needs_rated_corpora():
    class Unrated:
        info = {"dimensions": None}

    with pytest.raises(UsageError, match="--task dimensional needs a corpus with arousal"):
        check_task("dimensional", {"emodb": Unrated()})
    check_task("categorical", {"emodb": Unrated()})


@pytest.mark.slow  # ~2-4 min: the demo's 400 rounds
def test_dimensional_demo_reaches_a_mean_test_ccc_above_one_half(tmp_path, monkeypatch, capsys):
    """`python train.py --stage finetune --task dimensional` out of the box, then the test split's mean CCC."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXHUBERT_DATA", raising=False)
    assert cli.main(["--stage", "finetune", "--task", "dimensional", "--quiet"]) == 0
    capsys.readouterr()
    assert eval_cli.main(["--corpus", "demo", "--checkpoint", "runs/finetune", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mean_ccc"] > 0.5, doc["mean_ccc"]


def test_timeline_and_calibration_are_refused_for_a_dimensional_only_model(tmp_path, capsys):
    import jax
    import numpy as np
    import soundfile as sf

    from exhubert_jax import preset, save_pretrained
    from exhubert_jax.model.hubert import param_shapes

    config = preset("tiny", num_labels=0, label_names=None, dimensions=DIMENSIONS)
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), param_shapes(config))
    ckpt = save_pretrained(tmp_path / "dims", config, params)
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert eval_cli.main(["--audio", str(tmp_path / "a.wav"), "--checkpoint", str(ckpt), "--timeline"]) == 2
    assert "dimensional-only model" in capsys.readouterr().err
