"""Two processes on localhost (jax.distributed, one CPU device each, gloo collectives) train like one process with
the same global batch; an interrupt of both resumes exactly; only process 0 writes logs, exports and messages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exhubert_jax import from_pretrained
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.batching import RoundRobin, eval_batches
from toys import ToySource

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "multihost_run.py"
FLAGS = ["--steps", "4", "--batch-size", "4", "--max-seconds", "0.5", "--eval-every", "2", "--quiet"]
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1")


class CountingSource(ToySource):
    """A toy source that records which examples were read after construction."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.read = None

    def __getitem__(self, i):
        if self.read is not None:
            self.read.append(int(i))
        return super().__getitem__(i)


def joined(shares):
    """The rows of two processes' batches stacked back into the global batch."""
    return {k: np.concatenate([getattr(b, k) for b in shares]) for k in
            ("input_values", "attention_mask", "labels", "weights", "indices")}


def test_shares_of_a_global_batch_read_only_their_rows_and_stack_to_it():
    sources = [{"a": CountingSource(10, 0, 500, 9000), "b": CountingSource(7, 1, 500, 9000)} for _ in range(3)]
    whole = RoundRobin(sources[0], 4, 0.25, 3)
    shares = [RoundRobin(sources[i + 1], 4, 0.25, 3, shard=(i, 2)) for i in range(2)]
    for _ in range(9):
        for src in sources:
            for s in src.values():
                s.read = []
        batch, parts = next(whole), [next(s) for s in shares]
        glued = joined(parts)
        for k in glued:
            np.testing.assert_array_equal(glued[k], getattr(batch, k), err_msg=k)
        assert [p.n_seconds for p in parts] == [batch.n_seconds] * 2
        name = batch.corpus
        assert sources[1][name].read == list(batch.indices[:2]) and sources[2][name].read == list(batch.indices[2:])
    assert shares[0].state() == shares[1].state() == whole.state()


def test_eval_shares_pad_alike_and_stack_to_the_global_batch():
    source = ToySource(7, 4, 500, 9000)
    for crop in (None, 4000):
        whole = list(eval_batches(source, 4, 0.25, crop=crop))
        parts = [list(eval_batches(source, 4, 0.25, crop=crop, shard=(i, 2))) for i in range(2)]
        for batch, p0, p1 in zip(whole, *parts, strict=True):
            glued = joined([p0, p1])
            for k in glued:
                np.testing.assert_array_equal(glued[k], getattr(batch, k), err_msg=k)
    with pytest.raises(DataError, match="cannot be split into 3"):
        next(eval_batches(source, 4, 0.25, shard=(0, 3)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir: Path, data_dir: Path, processes: int, stop: str = "-") -> list[dict]:
    """Run train.py in `processes` local processes; each one's result, stdout and stderr."""
    port, procs = free_port(), []
    for i in range(processes):
        result = workdir.parent / f"{workdir.name}-{i}.json"
        dist = ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                "--process-id", str(i)] if processes > 1 else []
        cmd = [sys.executable, str(DRIVER), stop, str(result), "--data-dir", str(data_dir), "--workdir",
               str(workdir), *FLAGS, *dist]
        procs.append((result, subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)))
    runs = []
    for result, p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        runs.append(dict(json.loads(result.read_text()), stdout=out, stderr=err))
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    prepare_demo(root / "prepared", n_per_class=1, n_speakers=4, log=lambda s: None)
    data = root / "prepared"
    return root, dict(one=launch(root / "one", data, 1), two=launch(root / "two", data, 2),
                      half=launch(root / "split", data, 2, stop="2"), rest=launch(root / "split", data, 2))


def flat(tree) -> np.ndarray:
    import jax

    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_exactly(runs):
    root, r = runs
    _, one = from_pretrained(root / "one" / "final")
    _, two = from_pretrained(root / "two" / "final")
    _, split = from_pretrained(root / "split" / "final")
    diff = float(np.max(np.abs(flat(one) - flat(two))))
    print(f"max |params(1 process) - params(2 processes)| = {diff:.2e}")
    assert diff < 1e-5
    assert np.array_equal(flat(two), flat(split))  # interrupted after step 2 and resumed: bitwise the same
    assert r["half"][0]["history"] == [h for h in r["two"][0]["history"] if h["step"] <= 2]
    for run in ("two", "rest"):  # every process saw the same validation results
        assert r[run][0]["history"] == r[run][1]["history"] and r[run][0]["final_uar"] == r[run][1]["final_uar"]
    ckpts = root / "split" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.isdigit()) == ["2", "4"]
    for step in ("2", "4"):  # each process wrote its own Orbax files, merged under one manifest
        assert {p.name for p in (ckpts / step / "state").glob("ocdbt.process_*")} == {"ocdbt.process_0",
                                                                                      "ocdbt.process_1"}


@pytest.mark.slow
def test_only_process_zero_writes_logs_exports_and_messages(runs):
    root, r = runs
    for name in ("two", "split"):
        events = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        evals = [e["step"] for e in events if e["event"] == "eval"]
        assert evals == [2, 4], evals  # one line per evaluation: process 1 wrote none
        assert len(list((root / name / "tb").glob("events.out.tfevents.*"))) == (1 if name == "two" else 2)
        assert (root / name / "best" / "config.json").is_file() and (root / name / "final.json").is_file()
    printed = lambda run, i: [l for l in r[run][i]["stdout"].splitlines() if not l.startswith("[Gloo]")]
    assert "validation UAR" in r["two"][0]["stdout"] and printed("two", 1) == []
    assert "resuming from" in r["rest"][0]["stdout"] and printed("rest", 1) == []
    one = [json.loads(line) for line in (root / "one" / "metrics.jsonl").read_text().splitlines()]
    times = {k: np.median(r[k][0]["step_s"][1:]) for k in ("one", "two")}  # the first step compiles
    print(f"median seconds per round: 1 process {times['one']:.3f}, 2 processes {times['two']:.3f}")
    assert [e["step"] for e in one if e["event"] == "eval"] == [2, 4]


def test_process_flags_need_distributed(capsys):
    import train as cli

    assert cli.main(["--num-processes", "2", "--process-id", "1"]) == 2
    assert "need --distributed" in capsys.readouterr().err
