"""The end-to-end run: train, stop, resume bit for bit, export best/ and final/, logs; a different model is refused.

Its own file, so that a test run's workers can run it beside the other training tests."""

from __future__ import annotations

import json

import pytest

from exhubert_jax import from_pretrained
from exhubert_jax.training.checkpoints import ResumeError
from exhubert_jax.training.loop import train
from toys import leaves_equal, opts, sources, tiny


def test_resume_is_bitwise_equal(tmp_path):
    model, params, labels = tiny()
    tr, va = sources()
    full = train(model, params, labels, tr, va, tmp_path / "full", opts(), say=lambda s: None)
    half = train(model, params, labels, tr, va, tmp_path / "split", opts(stop_after=4), say=lambda s: None)
    assert not half.finished and int(half.state.step) == 4
    resumed = train(model, params, labels, tr, va, tmp_path / "split", opts(), say=lambda s: None)
    assert resumed.resumed_from == 4 and resumed.finished
    assert int(resumed.state.step) == int(full.state.step) == 8
    assert leaves_equal(full.state.params, resumed.state.params)
    assert leaves_equal(full.state.opt_state, resumed.state.opt_state)
    assert not leaves_equal(full.state.params, params)  # it did train
    assert [h["step"] for h in resumed.history] == [4, 8]
    # exported artefacts: best (with best.json), final, metrics.jsonl and TensorBoard events
    best = json.loads((tmp_path / "split" / "best.json").read_text())
    assert best["mean"] == max(h["mean"] for h in resumed.history)
    _, final_params = from_pretrained(tmp_path / "split" / "final")
    assert leaves_equal(final_params, resumed.state.params)
    events = [json.loads(line)["event"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "eval", "compile"} <= set(events)
    assert list((tmp_path / "split" / "tb").glob("events.out.tfevents.*"))
    # a different model cannot silently resume from this workdir
    other, other_params, other_labels = tiny(hidden_size=64, intermediate_size=64)
    with pytest.raises(ResumeError, match="different model/optimizer state"):
        train(other, other_params, other_labels, tr, va, tmp_path / "split", opts(), say=lambda s: None)
