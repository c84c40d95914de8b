"""Ctrl-C at any moment: every command answers one `interrupted: ...; nothing half-written` line, exit 130, with no
traceback, no crash and no false "damaged"; SIGINT is sent to real subprocesses, during imports, compilation, XLA
calls and steps (the long sweep is marked slow)."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import pytest

import sigint
from converters import flax_to_torch
from exhubert_jax import from_pretrained, init_params, preset, save_pretrained
from exhubert_jax.process import interrupts
from exhubert_jax.process.interrupts import Interrupted, deferred, held
from sigint import check_answer, interrupt, python

DEMO = ["--batch-size", "4", "--max-seconds", "0.5", "--quiet"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Prepared demo corpora (small) and a tiny 6-class checkpoint."""
    from exhubert_jax.data.demo.synthetic import prepare_demo

    root = tmp_path_factory.mktemp("interrupts")
    prepare_demo(root / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    save_pretrained(root / "ckpt", preset("tiny"), init_params(preset("tiny"), 0))
    return root


# ------------------------------------------------------------------------------------------------ the mechanism


def test_a_held_block_finishes_before_ctrl_c_is_raised():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            with held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                done.append("wrote")
    assert done == ["wrote"]


def test_ctrl_c_inside_unsafe_library_code_is_raised_once_back_in_ours(monkeypatch):
    monkeypatch.setattr(interrupts._State, "roots", ())
    real = interrupts._package_roots
    monkeypatch.setattr(interrupts, "_package_roots", lambda: (*real(), sigint.__file__))
    start, raised = time.perf_counter(), None
    with deferred():
        try:
            sigint.busy_with_ctrl_c(0.3)  # "library code": the interrupt must not land in it
            for _ in range(200):
                time.sleep(0.01)
        except KeyboardInterrupt:
            raised = time.perf_counter()
    assert raised is not None and 0.3 <= raised - start < 1.0  # after the call had finished, at once


class _DropsCtrlC:
    """An object whose __del__ is where Ctrl-C lands: Python ignores exceptions there ("Exception ignored in")."""

    def __del__(self):
        raise KeyboardInterrupt


def test_ctrl_c_that_landed_where_python_ignores_it_is_delivered_again(capsys):
    raised = False
    with deferred():
        try:
            _DropsCtrlC()  # deleted at once: its KeyboardInterrupt goes to sys.unraisablehook
            for _ in range(200):
                time.sleep(0.01)
        except KeyboardInterrupt:
            raised = True
    assert raised and "Exception ignored" not in capsys.readouterr().err


def test_an_interrupted_checkpoint_read_is_an_interrupt_not_damage(made, monkeypatch, tmp_path, capsys):
    import orbax.checkpoint as ocp

    def restore(self, *args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("read cancelled") from e  # how a wrapper around the interrupted read reports it

    monkeypatch.setattr(ocp.StandardCheckpointer, "restore", restore)
    with pytest.raises(KeyboardInterrupt):
        from_pretrained(made / "ckpt")
    assert flax_to_torch.main([str(made / "ckpt"), str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "damaged" not in err and sigint.ANSWER.fullmatch(err.strip().splitlines()[-1])
    assert not (tmp_path / "out").exists()


def test_training_interrupted_before_its_first_step_claims_no_checkpoint(tmp_path, monkeypatch):
    from exhubert_jax.training.loop import Trainer, train
    from toys import opts, sources, tiny

    def first_step(self, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_step", first_step)
    model, params, labels = tiny()
    with pytest.raises(Interrupted, match="before the first step; no checkpoint in .*starts afresh") as e:
        train(model, params, labels, *sources(), tmp_path / "run", opts())
    assert "saved" not in str(e.value) and list((tmp_path / "run" / "checkpoints").iterdir()) == []


def _signal_at(step_to_signal: int, signum: int, monkeypatch) -> None:
    """Send this process `signum` as the training loop starts the given step."""
    from exhubert_jax.training.loop import Trainer

    original = Trainer._train_step

    def hooked(self, step):
        if step == step_to_signal:
            os.kill(os.getpid(), signum)
        return original(self, step)

    monkeypatch.setattr(Trainer, "_train_step", hooked)


def test_sigterm_checkpoints_the_last_step_and_the_run_resumes_from_it(tmp_path, monkeypatch, capsys):
    """A preemption as step 3 starts: exit 143, one line, step 2 checkpointed (not a scheduled one: eval_every is
    4), and the same call resumes from it to the end. That a resumed run is bit-identical to an uninterrupted one is
    checked for stop_after in test_resume.py and, slow, for SIGTERM through train.py in test_faults.py."""
    from exhubert_jax.process.commands import command
    from exhubert_jax.training.loop import train
    from toys import opts, sources, tiny

    model, params, labels = tiny()
    tr, va = sources()
    _signal_at(3, signal.SIGTERM, monkeypatch)  # a preemption as step 3 starts

    @command
    def main() -> int:
        train(model, params, labels, tr, va, tmp_path / "split", opts(steps=4), say=lambda s: None)
        return 0

    assert main() == 143
    assert capsys.readouterr().err.strip() == (
        f"interrupted by SIGTERM: at step 2; checkpoint saved in {tmp_path}/split/checkpoints. Run the same command "
        "to resume; nothing half-written")
    monkeypatch.undo()
    resumed = train(model, params, labels, tr, va, tmp_path / "split", opts(steps=4), say=lambda s: None)
    assert resumed.resumed_from == 2 and resumed.finished and int(resumed.state.step) == 4


def test_sigusr1_checkpoints_now_and_training_goes_on(tmp_path, monkeypatch):
    from exhubert_jax.training.loop import train
    from toys import opts, sources, tiny

    model, params, labels = tiny()
    said: list[str] = []
    _signal_at(3, signal.SIGUSR1, monkeypatch)
    result = train(model, params, labels, *sources(), tmp_path, opts(), say=said.append)
    assert result.finished and f"step 3: checkpoint saved in {tmp_path}/checkpoints on request (SIGUSR1); training " \
        "goes on" in said
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is the run's only


def test_a_stop_whose_return_hook_was_lost_is_sent_again():
    raised, start = None, time.perf_counter()
    with deferred():
        try:
            with held(drop=True):  # SIGTERM lands where it must wait ...
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            interrupts._defer()  # ... is remembered again outside it ...
            sys.setprofile(None)  # ... and the hook that would raise it on return is replaced by another tool
            for _ in range(300):
                time.sleep(0.01)
        except KeyboardInterrupt:
            raised = time.perf_counter() - start
    assert raised is not None and raised < 2.5  # the timer sent it again
    assert interrupts.stop_signal() == signal.SIGTERM


class _FailsInDel:
    """An object whose __del__ fails: Python hands the error to sys.unraisablehook."""

    def __del__(self):
        raise ValueError("x")


def test_a_chain_of_hooks_that_leads_back_to_ours_reports_once(capsys, monkeypatch):
    """Another library's unraisable hook installed over ours, and ours again over it (a cycle), reports the error
    once with Python's own hook instead of recursing until RecursionError."""
    seen = []

    def theirs(unraisable):
        seen.append(unraisable.exc_type)
        theirs.previous(unraisable)

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    with deferred():
        theirs.previous, sys.unraisablehook = sys.unraisablehook, theirs
        interrupts._rearm.previous = theirs  # the cycle: ours -> theirs -> ours
        _FailsInDel()  # deleted at once: its ValueError goes to sys.unraisablehook
    err = capsys.readouterr().err  # the cycle is walked once at most, then Python's own hook reports it
    assert 1 <= len(seen) <= 2 and err.count("ValueError: x") == 1, (seen, err)


def test_a_resend_that_comes_after_its_stop_was_raised_does_nothing():
    """The resend timer checked `pending` before the stop was raised on return; its late call must not raise a
    second KeyboardInterrupt into the handling of the first (which replaced the training's one line)."""
    with deferred():
        interrupts._State.resent, interrupts._State.pending = True, False
        interrupts._handle(signal.SIGTERM, sys._getframe())  # no KeyboardInterrupt
        assert not interrupts._State.pending and not interrupts._State.resent
        with pytest.raises(KeyboardInterrupt):  # a real signal after it still stops
            interrupts._handle(signal.SIGTERM, sys._getframe())


def test_a_stop_during_the_step_keeps_the_steps_result(tmp_path, monkeypatch):
    """A stop that lands inside the jitted step is raised once its result is stored, so the step just run is saved
    and none is lost (its input state was donated: without its result there would be nothing to save)."""
    from exhubert_jax.training.loop import Trainer, train
    from toys import opts, sources, tiny

    original = Trainer._train_step

    def stopped_inside(self, step):
        if step == 3:
            update = self.update

            class Stopping:  # the update, with SIGTERM arriving while it runs
                def __getattr__(self, name):
                    return getattr(update, name)

                def __call__(self, *args):
                    os.kill(os.getpid(), signal.SIGTERM)
                    interrupts._defer()  # as when it lands in JAX's code
                    return update(*args)

            self.update = Stopping()
            try:
                return original(self, step)
            finally:
                self.update = update
        return original(self, step)

    monkeypatch.setattr(Trainer, "_train_step", stopped_inside)
    model, params, labels = tiny()
    with deferred(), pytest.raises(Interrupted, match="at step 3; checkpoint saved"):
        train(model, params, labels, *sources(), tmp_path, opts(), say=lambda s: None)


# ------------------------------------------------------------------------------------------ commands, fast subset


def test_a_signal_during_the_huge_page_restart_reaches_the_restarted_command(tmp_path):
    """SIGTERM that arrives while train.py restarts itself (exec) waits, pending, and is answered by the new process."""
    import subprocess

    restart = ("import os, signal, sys\n"
               "from exhubert_jax.process.interrupts import blocked\n"
               "with blocked():\n"
               "    os.kill(os.getpid(), signal.SIGTERM)  # arrives during the restart\n"
               f"    os.execv(sys.executable, [sys.executable, 'train.py', '--stage', 'finetune', '--workdir', "
               f"{str(tmp_path / 'run')!r}])\n")
    done = subprocess.run(python("-c", restart), cwd=sigint.ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    check_answer(done.returncode, done.stderr, signal.SIGTERM)
    assert done.stderr.strip() == "interrupted by SIGTERM: train.py stopped; nothing half-written"
    assert not (tmp_path / "run").exists()


def test_evaluate_interrupted_while_compiling(made):
    code, _, err, sent = interrupt(python("evaluate.py", "--corpus", "demo", "--checkpoint", str(made / "ckpt"),
                                          "--data-dir", str(made / "data"), "--bootstrap", "0"),
                                   after="evaluating demo-a")
    assert sent
    check_answer(code, err)
    assert not (made / "ckpt" / "eval").exists()  # no empty or partial eval/ folder


def test_flax_to_torch_interrupted_while_importing(made, tmp_path):
    code, _, err, sent = interrupt(python("-m", "converters.flax_to_torch", str(made / "ckpt"), str(tmp_path / "o")),
                                   delay=0.6)  # past interpreter start (the guard is in place), inside the imports
    assert sent
    check_answer(code, err)
    assert not (tmp_path / "o").exists()


def test_train_interrupted_during_init_and_compilation(made, tmp_path):
    code, _, err, sent = interrupt(python("train.py", "--stage", "finetune", *DEMO, "--data-dir", str(made / "data"),
                                          "--workdir", str(tmp_path / "run"), "--steps", "3"), after="random init")
    assert sent
    check_answer(code, err)
    assert "checkpoint saved" not in err or any((tmp_path / "run" / "checkpoints").iterdir())


# ------------------------------------------------------------------------------------------- the long sweep (slow)

TRIES = 20


def moments(seed: int, longest: float) -> list[float]:
    """TRIES random delays in [0, longest) seconds, seeded."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0, longest) for _ in range(TRIES))


def sweep(argv_for, longest: float, seed: int, after: str | None = None) -> list[int]:
    """SIGINT at random moments: each answer is exit 130 with the one line, or the command finished first (0)."""
    codes = []
    for i, delay in enumerate(moments(seed, longest)):
        code, _, err, sent = interrupt(argv_for(i), after=after, delay=delay)
        if sent and code != 0:
            check_answer(code, err)
        assert not any(s in err for s in sigint.CRASH_SIGNS) and "damaged" not in err, err[-3000:]
        codes.append(code)
    return codes


@pytest.mark.slow
def test_train_base_random_init_sweep(made, tmp_path):
    """The segfault case: a base-size random model, interrupted during init, compilation and its first steps."""
    codes = sweep(lambda i: python("train.py", "--stage", "finetune", "--preset", "base", *DEMO, "--data-dir",
                                   str(made / "data"), "--workdir", str(tmp_path / f"run{i}"), "--steps", "2"),
                  25.0, 1, after="random init")
    assert codes.count(130) >= TRIES // 2, codes


@pytest.mark.slow
def test_evaluate_sweep(made, tmp_path):
    codes = sweep(lambda i: python("evaluate.py", "--corpus", "demo", "--checkpoint", str(made / "ckpt"),
                                   "--data-dir", str(made / "data"), "--out", str(tmp_path / f"e{i}")), 8.0, 2)
    whole = {"results.json", "results.md", *(f"{kind}_demo-{c}.{ext}" for c in "abc"
                                            for kind, ext in (("confusion", "png"), ("confusion", "json"),
                                                              ("reliability", "png")))}
    for i, code in enumerate(codes):  # all the files (Ctrl-C during their write waits for it), or no folder at all
        out = tmp_path / f"e{i}" / "demo-test-masked-emotion"  # each evaluation writes its own folder under --out
        assert (code != 0 or out.exists()) and (not out.exists() or {p.name for p in out.iterdir()} == whole)
    assert codes.count(130) >= TRIES // 2, codes


@pytest.mark.slow
def test_flax_to_torch_sweep(made, tmp_path):
    codes = sweep(lambda i: python("-m", "converters.flax_to_torch", str(made / "ckpt"), str(tmp_path / f"o{i}")),
                  5.0, 3)
    for i, code in enumerate(codes):
        assert ((tmp_path / f"o{i}" / "config.json").is_file() and (tmp_path / f"o{i}" / "model.safetensors")
                .is_file()) if code == 0 else not (tmp_path / f"o{i}").exists()
    assert codes.count(130) >= TRIES // 2, codes


@pytest.mark.slow
@pytest.mark.parametrize("module", ["exhubert_jax.expansion", "converters.torch_to_flax", "converters.to_onnx",
                                    "exhubert_jax.embed", "exhubert_jax.data.prepare", "exhubert_jax.protocol"])
def test_every_other_command_answers_ctrl_c_while_starting(module, tmp_path):
    code, _, err, sent = interrupt(python("-m", module, "--help"), delay=0.2)
    if sent and code != 0:
        check_answer(code, err)
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_no_signal_is_lost_in_the_first_instants(made, tmp_path, signum):
    """Signals 0.01-0.3 s after start (across the huge-page restart): each stops train.py at once. Only one that
    lands while the interpreter itself starts, before any line of ours runs, gets the interpreter's own answer."""
    for i, delay in enumerate((0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)):
        started = time.perf_counter()
        code, _, err, sent = interrupt(python("train.py", "--stage", "finetune", *DEMO, "--data-dir",
                                              str(made / "data"), "--workdir", str(tmp_path / f"r{signum}-{i}"),
                                              "--steps", "400"), delay=delay, signum=signum, timeout=120)
        assert sent and time.perf_counter() - started < 60, (delay, err[-2000:])  # it stopped: the signal was heard
        if code == 128 + signum or delay >= 0.1:
            check_answer(code, err, signum)
        else:  # before our first line: the interpreter's default answer, never a run that trains on
            assert code in (-signum, 1) and "<frozen" in err or code == -signum, (delay, code, err[-2000:])
