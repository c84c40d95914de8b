"""Round-robin training through train(): compiles, per-corpus updates, schedules, run.json, early stopping, card
input (the round's arithmetic: test_round_math.py)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from exhubert_jax.model.param_labels import LabelError
from exhubert_jax.training.loop import TrainOptions, train
from exhubert_jax.training.optimizer import make_schedule
from exhubert_jax.training.run_record import RunConfigError
from exhubert_jax.training.step import TrainError
from toys import NO_DROPOUT, ToySource, opts, sources, tiny


def test_compiles_do_not_grow_with_the_number_of_corpora(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    counts = []
    for n in (2, 5):
        tr = {f"c{i}": ToySource(16, i) for i in range(n)}
        va = {"c0": ToySource(6, 99)}
        result = train(model, params, labels, tr, va, tmp_path / str(n), opts(steps=6, eval_every=6),
                       say=lambda s: None)
        counts.append(result.compiles)
        assert result.compiles == len(set(result.bucket_shapes)) <= 3
        events = [json.loads(l) for l in (tmp_path / str(n) / "metrics.jsonl").read_text().splitlines()]
        train_events = [e for e in events if e["event"] == "train"]
        assert {f"loss/c{i}" for i in range(n)} <= set(train_events[-1])  # each corpus's loss in every round
        assert {"lr", "rounds_per_s", "audio_s_per_s", "data_wait_s_per_step"} <= set(train_events[-1])
    assert counts[1] <= 3 and counts[0] <= 3


def test_per_corpus_updates_count_corpus_batches(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    result = train(model, params, labels, tr, va, tmp_path, opts(steps=4, eval_every=4, update="per-corpus"),
                   say=lambda s: None)
    assert int(result.state.step) == 4
    events = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "steps_per_s" in [e for e in events if e["event"] == "train"][-1]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_warm_up_then_decay_to_zero(kind):
    schedule = make_schedule(kind, 1e-3, steps=100, warmup_steps=10)
    assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(55)) < 1e-3 and float(schedule(100)) == pytest.approx(0.0, abs=1e-12)
    assert make_schedule("constant", 1e-5, 100) == 1e-5  # the paper's: a plain constant
    assert float(make_schedule("constant", 1e-5, 100, 10)(50)) == pytest.approx(1e-5)
    with pytest.raises(LabelError, match="--warmup-steps"):
        make_schedule(kind, 1e-3, steps=10, warmup_steps=10)


def test_logged_learning_rate_follows_the_schedule(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    train(model, params, labels, tr, va, tmp_path, opts(steps=4, eval_every=4, log_every=1, schedule="linear",
                                                        warmup_steps=2), say=lambda s: None)
    lrs = [e["lr"] for e in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
           if e["event"] == "train"]
    assert lrs == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])


@pytest.mark.slow  # end to end through three train() runs; test_options checks the same refusal on run.json itself
def test_run_json_records_the_run_and_guards_resume(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    train(model, params, labels, tr, va, tmp_path, opts(stop_after=4), say=lambda s: None)
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["options"]["lr"] == 1e-3 and doc["options"]["update"] == "round"
    assert doc["model"]["hidden_size"] == model.config.hidden_size and doc["packages"]["jax"] == jax.__version__
    assert sorted(doc["corpora"]) == ["toy-a", "toy-b"] and "commit" in doc
    with pytest.raises(RunConfigError, match=r"--lr \(was 0.001, now 0.01\)"):
        train(model, params, labels, tr, va, tmp_path, opts(lr=1e-2), say=lambda s: None)
    result = train(model, params, labels, tr, va, tmp_path, opts(eval_every=2), say=lambda s: None)
    assert result.resumed_from == 4 and result.finished  # how often to evaluate does not change the parameters


def test_patience_stops_early_and_a_rerun_stays_stopped(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    quiet = opts(steps=40, eval_every=2, lr=1e-12, patience=2)  # UAR never improves at this learning rate
    result = train(model, params, labels, tr, va, tmp_path, quiet, say=lambda s: None)
    assert result.early_stopped and result.finished and int(result.state.step) == 6
    assert [h["step"] for h in result.history] == [2, 4, 6] and (tmp_path / "final").is_dir()
    again = train(model, params, labels, tr, va, tmp_path, quiet, say=lambda s: None)
    assert again.early_stopped and int(again.state.step) == 6


@pytest.mark.parametrize("flag, value, message", [
    ("steps", 0, "--steps must be at least 1, got 0"),
    ("lr", -1.0, "--lr must be positive"),
    ("batch_size", 0, "--batch-size must be at least 1"),
    ("update", "sometimes", "--update must be one of round, per-corpus"),
    ("patience", 0, "--patience must be at least 1"),
])
def test_options_name_the_one_bad_flag(flag, value, message):
    with pytest.raises(TrainError, match=message):
        TrainOptions(**{flag: value}).validate()


def test_card_training_pads_every_batch_to_one_length(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr, va = sources()
    result = train(model, params, labels, tr, va, tmp_path, opts(steps=3, eval_every=3, input_mode="card"),
                   say=lambda s: None)
    assert {s[1] for s in result.bucket_shapes} == {4000}  # max_seconds 0.25 s at 16 kHz


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_schedule_counts_optimizer_updates_under_accumulation(kind):
    from exhubert_jax.training.loop import schedule_for

    schedule = schedule_for(TrainOptions(steps=8, accumulate=2, lr=1e-3, schedule=kind, warmup_steps=2))
    assert float(schedule(0)) == 0.0 and np.isclose(float(schedule(1)), 1e-3)  # 1 warm-up update, then the peak
    assert float(schedule(4)) == 0.0 and float(schedule(3)) > 0.0  # 8 steps are 4 updates: decayed to 0 at the 4th
