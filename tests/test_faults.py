"""Injected faults: damaged checkpoint parts, disk full, SIGKILL during a save, SIGINT during training.

Each fault must give the command's one-line message and lose no finished work: a resumed run restarts from the
newest intact state and ends with parameters bitwise equal to an uninterrupted run's.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exhubert_jax import from_pretrained, init_params, preset, save_pretrained
from exhubert_jax.errors import ExhubertError
from exhubert_jax.pretrained import CheckpointError, CheckpointWriteError
from exhubert_jax.training.checkpoints import DAMAGED, ResumeError, RunCheckpoints
from fault_hooks import failing_open

ROOT = Path(__file__).resolve().parent.parent
HOOKS = Path(__file__).resolve().parent / "fault_hooks.py"
RUN = ["--stage", "finetune", "--batch-size", "4", "--max-seconds", "0.5", "--eval-every", "3", "--quiet"]


# ------------------------------------------------------------------------------------------------ file damage


def truncate(path: Path) -> None:
    """Cut a file to half its length (a write that stopped early)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def largest(folder: Path, pattern: str) -> Path:
    """The largest file matching pattern (an OCDBT data file holding array bytes)."""
    return max(folder.glob(pattern), key=lambda p: p.stat().st_size)


def data_files(folder: Path) -> list[Path]:
    """The OCDBT data files of an Orbax item directory."""
    return sorted(folder.glob("ocdbt.process_*/d/*"))


# damage to one step of {workdir}/checkpoints (its parts: state = params + opt state + step/rng, meta = data position,
# best so far and history) -> what the resume message says about it
STEP_DAMAGE = {
    "meta/metadata missing": (lambda d: (d / "meta" / "metadata").unlink(), "meta/metadata (the data position) is missing"),
    "meta/metadata truncated": (lambda d: truncate(d / "meta" / "metadata"), "is truncated or not JSON"),
    "state/_METADATA missing": (lambda d: (d / "state" / "_METADATA").unlink(), "state/_METADATA is missing"),
    "state/_METADATA truncated": (lambda d: truncate(d / "state" / "_METADATA"), "state/_METADATA is truncated"),
    "state/manifest.ocdbt missing": (lambda d: (d / "state" / "manifest.ocdbt").unlink(), "manifest.ocdbt is missing"),
    "state data file missing": (lambda d: largest(d / "state", "ocdbt.process_*/d/*").unlink(), "state/ unreadable"),
    "state data files truncated": (lambda d: [truncate(p) for p in data_files(d / "state")], "state/ unreadable"),
    "state/ missing": (lambda d: shutil.rmtree(d / "state"), "state/ is missing"),
}

# damage to a save_pretrained directory (best/, final/, a converted checkpoint) -> what the error says
EXPORT_DAMAGE = {
    "params/_METADATA missing": (lambda d: (d / "params" / "_METADATA").unlink(), "params/_METADATA is missing"),
    "params/_METADATA truncated": (lambda d: truncate(d / "params" / "_METADATA"), "truncated or not JSON"),
    "params/manifest.ocdbt missing": (lambda d: (d / "params" / "manifest.ocdbt").unlink(), "manifest.ocdbt is missing"),
    "params/d index missing": (lambda d: [p.unlink() for p in (d / "params").glob("d/*")], "lists no arrays"),
    "params data file missing": (lambda d: largest(d / "params", "ocdbt.process_*/d/*").unlink(), "data unreadable"),
    "params data files truncated": (lambda d: [truncate(p) for p in data_files(d / "params")], "data unreadable"),
    "config.json truncated": (lambda d: truncate(d / "config.json"), "config.json is unreadable or truncated"),
}


def one_line_error(text: str) -> str:
    """The stderr of a failed command must be exactly one 'error: ...' line; returns it."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------- RunCheckpoints (fast, in-process)


def small_state(step: int) -> dict:
    """A train-state-like tree (params, optimizer moments, step) of random values drawn from `step`."""
    rng = np.random.default_rng(step)
    params = {"w": jnp.asarray(rng.standard_normal((64, 64)), jnp.float32), "b": jnp.full((3,), float(step))}
    return dict(step=jnp.asarray(step, jnp.int32), params=params,
                opt_state=dict(mu=jax.tree.map(lambda x: x * 0.5, params), count=jnp.asarray(step, jnp.int32)))


def two_steps(workdir: Path, said: list) -> RunCheckpoints:
    """A workdir with intact checkpoints at steps 1 and 2."""
    ckpts = RunCheckpoints(workdir, keep=3, say=said.append)
    for step in (1, 2):
        ckpts.save(step, small_state(step), dict(data=dict(position=step)))
    return ckpts


def files_in(folder: Path) -> list[Path]:
    """Every path under a folder, relative to it."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def same(a, b) -> bool:
    """Bitwise equality of two pytrees."""
    la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("damage", sorted(STEP_DAMAGE))
def test_damaged_latest_step_falls_back_to_newest_intact(tmp_path, damage):
    said = []
    two_steps(tmp_path, said).close()
    hurt, reason = STEP_DAMAGE[damage]
    hurt(tmp_path / "checkpoints" / "2")
    left = files_in(tmp_path / "checkpoints" / "2")
    ckpts = RunCheckpoints(tmp_path, keep=3, say=said.append)
    state, meta = ckpts.restore(small_state(0), ckpts.latest_step())
    assert same(state, small_state(1)) and meta["data"] == {"position": 1}
    assert len(said) == 1 and "\n" not in said[0], said
    assert "checkpoints/2 is damaged (" in said[0] and reason in said[0] and "resuming from step 1" in said[0]
    # nothing deleted: the damaged step is moved aside whole, and its number can be saved again
    aside = tmp_path / DAMAGED / "2"
    assert left and files_in(aside) == left
    ckpts.save(2, small_state(2), dict(data=dict(position=2)))
    assert ckpts.latest_step() == 2 and same(ckpts.restore(small_state(0))[0], small_state(2))
    ckpts.close()


def test_every_step_damaged_is_one_line_and_deletes_nothing(tmp_path):
    two_steps(tmp_path, []).close()
    for step in ("1", "2"):
        (tmp_path / "checkpoints" / step / "meta" / "metadata").unlink()
    ckpts = RunCheckpoints(tmp_path, say=lambda s: None)
    with pytest.raises(ResumeError) as info:
        ckpts.latest_step()
    msg = str(info.value)
    assert "\n" not in msg and "no intact checkpoint" in msg and "step 2: meta/metadata" in msg and "step 1:" in msg
    assert isinstance(info.value, ExhubertError)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]
    ckpts.close()


def test_disk_full_during_save_is_one_line_and_keeps_the_previous_step(tmp_path, monkeypatch):
    ckpts = two_steps(tmp_path, [])
    hooked = failing_open(r"checkpoints/3\.orbax-checkpoint-tmp/state[^/]*/_METADATA$", "enospc")
    monkeypatch.setattr(builtins, "open", hooked)
    monkeypatch.setattr(io, "open", hooked)
    with pytest.raises(CheckpointWriteError) as info:
        ckpts.save(3, small_state(3), dict(data=dict(position=3)))
    msg = str(info.value)
    assert "\n" not in msg and "No space left on device" in msg and "step 2 is the newest kept one" in msg
    monkeypatch.undo()
    assert ckpts.latest_step() == 2 and same(ckpts.restore(small_state(0))[0], small_state(2))
    ckpts.save(3, small_state(3), dict(data=dict(position=3)))  # space is back: the same step saves
    assert ckpts.latest_step() == 3
    ckpts.close()


# ------------------------------------------------------------------ best/ and final/ (fast: fails before any compile)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An intact save_pretrained directory of a tiny model."""
    path = tmp_path_factory.mktemp("export") / "final"
    config = preset("tiny")
    save_pretrained(path, config, init_params(config, 0))
    return path


@pytest.mark.parametrize("damage", sorted(EXPORT_DAMAGE))
def test_damaged_export_gives_one_line_in_every_command(tmp_path, export_dir, damage, capsys):
    import evaluate
    import train
    from converters import flax_to_torch

    bad = tmp_path / "final"
    shutil.copytree(export_dir, bad)
    hurt, reason = EXPORT_DAMAGE[damage]
    hurt(bad)
    with pytest.raises(CheckpointError) as info:
        from_pretrained(bad)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and reason in msg and "damaged checkpoint" in msg, msg
    capsys.readouterr()
    import soundfile as sf

    sf.write(tmp_path / "clip.wav", np.zeros(16000, np.float32), 16000)  # intact: evaluate.py checks it first
    codes = {
        "evaluate": evaluate.main(["--audio", str(tmp_path / "clip.wav"), "--checkpoint", str(bad)]),
        "train --init": train.main(["--stage", "expand", "--init", str(bad), "--workdir", str(tmp_path / "ex")]),
        "converter": flax_to_torch.main([str(bad), str(tmp_path / "torch")]),
    }
    for name, code in codes.items():
        assert code in (1, 2), (name, code)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3, err[-3000:]  # one line per command (which array a data error names may vary)
    assert all(line.startswith(f"error: {bad}: damaged checkpoint (") and reason in line for line in lines), lines


def test_disk_full_during_export_is_one_line(tmp_path, monkeypatch):
    config = preset("tiny")
    hooked = failing_open(r"final[^/]*/config\.json$", "enospc")
    monkeypatch.setattr(builtins, "open", hooked)
    params = init_params(config, 0)
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*final \(No space left on device: "
                                                   r"needs about [\d.]+ kB") as info:
        save_pretrained(tmp_path / "final", config, params)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # no partial folder


# ----------------------------------------------------------------------- the training CLI in subprocesses (slow)


def run(fault: str, workdir: Path, data_dir: Path, steps: int) -> subprocess.CompletedProcess:
    """`python train.py --stage finetune` (tiny demo, few steps) with one injected fault."""
    argv = [sys.executable, str(HOOKS), fault, "train", *RUN, "--data-dir", str(data_dir), "--workdir", str(workdir),
            "--steps", str(steps)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def final_params(workdir: Path):
    """Parameters of a run's final/ export."""
    return from_pretrained(workdir / "final")[1]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Prepared demo data, an uninterrupted 9-step run (the reference) and a run stopped after step 6."""
    from exhubert_jax.data.demo.synthetic import prepare_demo

    root = tmp_path_factory.mktemp("faults")
    prepare_demo(root / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    ref, base = run("none", root / "ref", root / "data", 9), run("none", root / "base", root / "data", 6)
    assert ref.returncode == 0 and base.returncode == 0, ref.stderr[-2000:] + base.stderr[-2000:]
    return dict(root=root, data=root / "data", reference=final_params(root / "ref"), base=root / "base")


def resume_equals_reference(cli, workdir: Path, from_step: int) -> str:
    """Run the same command again: it resumes from `from_step` and ends bitwise equal to the reference."""
    done = run("none", workdir, cli["data"], 9)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {workdir}/checkpoints/{from_step} (step {from_step} of 9)" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr
    assert same(final_params(workdir), cli["reference"])
    return done.stdout


@pytest.mark.slow
def test_sigkill_during_checkpoint_save(cli):
    work = cli["root"] / "kill"
    # killed after the step-6 state arrays were written, before the checkpoint was committed
    killed = run(r"open:checkpoints/6\.orbax-checkpoint-tmp/state[^/]*/_METADATA$:kill", work, cli["data"], 9)
    assert killed.returncode == -9
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["3", "6.orbax-checkpoint-tmp"]
    resume_equals_reference(cli, work, 3)


@pytest.mark.slow
def test_sigint_during_training(cli):
    work = cli["root"] / "sigint"
    stopped = run("sigint:5", work, cli["data"], 9)  # Ctrl-C as step 5 starts: 4 steps are done
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted: at step 4; checkpoint saved in" in stopped.stderr and "Traceback" not in stopped.stderr
    resume_equals_reference(cli, work, 4)


@pytest.mark.slow
def test_sigterm_at_a_random_step_resumes_bit_identically(cli):
    import random

    at = random.randint(2, 9)  # SIGTERM (a preemption) as step `at` starts: at - 1 steps are done
    work = cli["root"] / f"sigterm-{at}"
    stopped = run(f"sigterm:{at}", work, cli["data"], 9)
    assert stopped.returncode == 143, f"step {at}: " + stopped.stderr[-3000:]
    line = stopped.stderr.strip().splitlines()[-1]
    assert line == (f"interrupted by SIGTERM: at step {at - 1}; checkpoint saved in {work}/checkpoints. Run the same "
                    "command to resume; nothing half-written"), line
    assert "Traceback" not in stopped.stderr
    resume_equals_reference(cli, work, at - 1)  # no round lost, none repeated


@pytest.mark.slow
def test_disk_full_during_checkpoint_save(cli):
    work = cli["root"] / "enospc"
    full = run(r"open:checkpoints/6\.orbax-checkpoint-tmp/state[^/]*/_METADATA$:enospc", work, cli["data"], 9)
    assert full.returncode == 2
    line = one_line_error(full.stderr)
    assert f"cannot write checkpoint {work}/checkpoints/6" in line and "No space left on device" in line
    assert "step 3 is the newest kept one" in line
    resume_equals_reference(cli, work, 3)


@pytest.mark.slow
def test_disk_full_during_final_export(cli):
    work = cli["root"] / "enospc-final"
    full = run(r"open:/\.?final[^/]*/config\.json$:enospc", work, cli["data"], 9)
    assert full.returncode == 2
    assert f"cannot write checkpoint {work}/final" in one_line_error(full.stderr)
    resume_equals_reference(cli, work, 9)  # the step-9 checkpoint was saved first: only final/ is rewritten


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["meta/metadata missing", "state data files truncated"])
def test_damaged_latest_checkpoint_resumes_from_intact(cli, damage):
    work = cli["root"] / damage.replace("/", "-").replace(" ", "-")
    shutil.copytree(cli["base"], work)
    hurt, reason = STEP_DAMAGE[damage]
    hurt(work / "checkpoints" / "6")
    out = resume_equals_reference(cli, work, 3)
    assert f"checkpoint {work}/checkpoints/6 is damaged (" in out and reason in out
    assert (work / DAMAGED / "6").is_dir()


def test_export_of_another_config_is_a_mismatch_not_damage(tmp_path, export_dir):
    import json

    other = tmp_path / "final"
    shutil.copytree(export_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "num_labels": 3, "label_names": None}))
    with pytest.raises(CheckpointError, match=r"params does not match .*config\.json: parameter .*classifier") as info:
        from_pretrained(other)
    assert "damaged" not in str(info.value)


@pytest.mark.slow
def test_sigint_with_every_training_aid_resumes_bit_identically(tmp_path):
    """Augmentation (noise, reverb, speed), balanced class weights and balanced sampling: Ctrl-C as step 5 starts,
    then the same command, ends bitwise equal to an uninterrupted run (every draw follows the seed and step)."""
    from exhubert_jax.data.demo.synthetic import prepare_demo

    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    aids = ["--augment", "noise", "--augment", "reverb", "--augment", "speed", "--class-weights", "balanced",
            "--sampling", "balanced"]

    def run_with_aids(fault: str, workdir: Path) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(HOOKS), fault, "train", *RUN, *aids, "--data-dir", str(tmp_path / "data"),
                "--workdir", str(workdir), "--steps", "9"]
        return subprocess.run(argv, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                              text=True, timeout=900)

    reference = run_with_aids("none", tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    stopped = run_with_aids("sigint:5", tmp_path / "split")
    assert stopped.returncode == 130 and "interrupted: at step 4; checkpoint saved in" in stopped.stderr, \
        stopped.stderr[-3000:]
    resumed = run_with_aids("none", tmp_path / "split")
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-3000:]
    assert same(final_params(tmp_path / "split"), final_params(tmp_path / "ref"))
