"""One run per workdir: a second run is refused naming the holder; a killed run leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exhubert_jax.process.output_dirs import UnwritableError
from exhubert_jax.process.workdir_lock import WorkdirBusy, workdir_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys; from exhubert_jax.process.workdir_lock import workdir_lock\nwith workdir_lock(sys.argv[1]):\n" \
       "    print('held', flush=True); sys.stdin.read()"


def holder(workdir: Path) -> subprocess.Popen:
    """A process that holds the workdir's lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = holder(tmp_path / "run")
    with pytest.raises(WorkdirBusy, match=rf"in use by another run \(pid {proc.pid} on .+\); wait for it"):
        with workdir_lock(tmp_path / "run"):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with workdir_lock(tmp_path / "run"):  # the OS released the dead holder's lock
        pass


def test_the_train_cli_refuses_a_busy_workdir(tmp_path, capsys):
    import train as cli

    proc = holder(tmp_path / "run")
    try:
        code = cli.main(["--stage", "finetune", "--workdir", str(tmp_path / "run"), "--data-dir",
                         str(tmp_path / "data"), "--steps", "1", "--quiet"])
    finally:
        proc.stdin.close()
        proc.wait()
    assert code == 2 and f"in use by another run (pid {proc.pid}" in capsys.readouterr().err
    assert not (tmp_path / "run" / "run.json").exists()


def test_an_unwritable_workdir_names_the_path_and_the_flag(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UnwritableError, match=r"cannot write in .*file/run .*choose another place with --workdir"):
        with workdir_lock(tmp_path / "file" / "run"):
            pass
