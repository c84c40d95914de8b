"""The one progress display (exhubert_jax.process.progress): a bar on a terminal, periodic lines in a log or a pipe,
nothing when quiet; training shows it with stderr piped; a quiet protocol prints one line per run and its table."""

from __future__ import annotations

import io

import pytest

from exhubert_jax.process import progress as pr


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_lines_every_interval_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = pr.LineProgress(120, "train", "step", file=out, every=30, clock=clock)
    for _ in range(40):
        clock.now += 0.5  # 20 s: no line yet
        bar.update()
    assert out.getvalue() == ""
    clock.now += 10.5
    bar.update()
    bar.set_postfix(loss="1.234")
    for _ in range(79):
        clock.now += 0.5
        bar.update()
    bar.close()
    bar.close()  # a second close writes nothing more
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: step 41/120 (34 %), 1.3 step/s, about 59 s left"
    assert lines[1] == "train: step 101/120 (84 %), 1.7 step/s, about 11 s left, loss=1.234"
    assert lines[2] == "train: step 120/120 (100 %), 1.7 step/s, done in 70 s, loss=1.234" and len(lines) == 3


def test_slow_units_read_as_seconds_each_and_no_total_as_a_count():
    assert pr.progress_line("train", "round", 40, 120, 0, 84.0) == \
        "train: round 40/120 (33 %), 2.1 s/round, about 3 min left"
    assert pr.progress_line("train", "round", 40, 120, 40, 84.0) == "train: round 40/120 (33 %)"  # none done yet
    assert pr.progress_line("timeline", "audio s", 612.5, None, 0, 20.0) == "timeline: audio s 612.5, 30.6 audio s/s"


def test_a_loop_shorter_than_the_interval_writes_nothing():
    out = io.StringIO()
    with pr.LineProgress(5, "prepare x", "file", file=out, every=30) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue() == ""


def test_quiet_writes_nothing_anywhere(monkeypatch, capsys):
    monkeypatch.setenv(pr.ENV, "0")
    for file in (io.StringIO(), Terminal(), None):
        bar = pr.progress(10, "train", "step", quiet=True, file=file)
        for _ in range(10):
            bar.update()
        bar.set_postfix(loss=1)
        bar.close()
        assert file is None or file.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_tqdm_bar_and_a_pipe_gets_lines(monkeypatch):
    from tqdm import tqdm

    bar = pr.progress(3, "train", "step", file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr("sys.stderr", Terminal())
    stderr_bar = pr.progress(3, "train", "step")
    assert isinstance(stderr_bar, tqdm)
    stderr_bar.close()
    monkeypatch.setenv(pr.ENV, "0")
    piped = io.StringIO()
    bar = pr.progress(3, "train", "step", file=piped)
    assert isinstance(bar, pr.LineProgress) and bar.every == 0
    bar.update()
    assert piped.getvalue().startswith("train: step 1/3 (33 %)")


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_interval_is_one_line_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(pr.ENV, value)
    with pytest.raises(pr.ProgressError, match=rf"^\$EXHUBERT_PROGRESS_SECONDS='{value}': give the seconds"):
        pr.progress(3, "train", "step", file=io.StringIO())
    monkeypatch.setenv(pr.ENV, "")
    assert pr.interval() == pr.PROGRESS_SECONDS == 30


def test_training_with_stderr_piped_reports_progress(tmp_path, monkeypatch, capsys):
    from exhubert_jax.training.loop import train
    from toys import opts, sources, tiny

    monkeypatch.setenv(pr.ENV, "0")
    model, params, labels = tiny()
    train(model, params, labels, *sources(), tmp_path, opts(steps=2, eval_every=2, quiet=False), say=lambda s: None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: round ")]
    assert lines and lines[-1].startswith("train: round 2/2 (100 %)"), lines


def test_a_quiet_protocol_prints_one_line_per_run_and_the_table(tmp_path, monkeypatch, capsys):
    from exhubert_jax.protocols import runner as protocol, runs as protocol_runs
    from test_protocol import FAST, fake_prepared, result

    def chatty_train(argv):
        print("warning: a-fold1of3, validation split: one class only")
        for step in range(1, 41):
            print(f"step {step}: validation UAR x 0.5, mean 0.5")
        print("| corpus | validation UAR (step 40) |")
        return 0

    monkeypatch.setattr("exhubert_jax.cli.train.main", chatty_train)
    monkeypatch.setattr(protocol_runs, "evaluate_stage", lambda stage, *a: result([0, 1], [0, 1], ["x", "y"]))
    data = fake_prepared(tmp_path / "data", *(f"a-fold{n}of3" for n in (1, 2, 3)))
    argv = ["folds", "--folds", "a", "--workdir", str(tmp_path / "p"), "--data-dir", str(data), "--"]
    assert protocol.main(argv + FAST) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [line for line in out if line.startswith("protocol: ")]
    assert [line.split(": ", 2)[2] for line in runs] == [f"test UAR 1.0000 (2 utterances of a-fold{n}of3)"
                                                          for n in (1, 2, 3)]
    assert not any(line.startswith(("step ", "| corpus")) for line in out) and len(out) <= 6 + 12, out
    assert out.count("warning: a-fold1of3, validation split: one class only") == 3  # warnings are kept
    again = tmp_path / "loud"
    assert protocol.main(["folds", "--folds", "a", "--workdir", str(again), "--data-dir", str(data), "--",
                          *[a for a in FAST if a != "--quiet"]]) == 0
    loud = capsys.readouterr().out
    assert loud.count("step 40: validation") == 3 and loud.count("python train.py") == 3  # not quiet: all of it


def test_a_quiet_run_that_fails_shows_what_it_printed(tmp_path, monkeypatch, capsys):
    from exhubert_jax.protocols import runs as protocol_runs
    from test_protocol import FAST

    def failing_train(argv):
        print("random init: preset tiny")
        return 2

    monkeypatch.setattr("exhubert_jax.cli.train.main", failing_train)
    runs = protocol_runs.fold_runs(["a-fold1of2", "a-fold2of2"], FAST, tmp_path, None)
    with pytest.raises(protocol_runs.ProtocolError, match="train.py exit 2, message above"):
        protocol_runs.run_protocol("folds", runs, tmp_path)
    assert capsys.readouterr().out == "random init: preset tiny\n"


def test_a_timeline_with_stderr_piped_reports_progress_and_quiet_none(tmp_path, monkeypatch, capsys):
    import numpy as np
    import soundfile as sf

    import evaluate
    from exhubert_jax import save_pretrained
    from exhubert_jax.model.config import preset
    from exhubert_jax.model.hubert import init_params

    config = preset("tiny", layerdrop=0.0)
    checkpoint = save_pretrained(tmp_path / "ckpt", config, init_params(config, 0))
    t = np.arange(6 * 16000) / 16000
    sf.write(tmp_path / "talk.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    monkeypatch.setenv(pr.ENV, "0")
    argv = ["--audio", str(tmp_path / "talk.wav"), "--timeline", "--checkpoint", str(checkpoint), "--out",
            str(tmp_path / "out"), "--batch-size", "2"]
    assert evaluate.main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("timeline: audio s ") for line in lines), lines
    assert lines[-1].startswith("timeline: audio s 6/6 (100 %)"), lines
    assert evaluate.main(argv + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""
