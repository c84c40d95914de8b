"""Read-only output locations (a read-only bind mount: as root, chmod has no effect): `train.py --workdir`,
`evaluate.py`'s default output inside a read-only checkpoint and `prepare --out` each give one line naming the path
and the flag that chooses another place, exit 2, before any work."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import evaluate
import train
from exhubert_jax import init_params, preset, save_pretrained
from exhubert_jax.data.prepare.command import main as prepare_main
from test_data_prepare import make_corpus

WHY = "Read-only file system"


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder holding a tiny checkpoint, bind-mounted read-only onto itself (skipped where mount is refused)."""
    folder = tmp_path_factory.mktemp("read-only")
    save_pretrained(folder / "ckpt", preset("tiny"), init_params(preset("tiny"), 0))
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a read-only location")
    made = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here ({made.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def one_error_line(capsys) -> str:
    """The only stderr line, an `error: ...`."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_train_workdir_in_a_read_only_place(read_only, tmp_path, capsys):
    from exhubert_jax.data.demo.synthetic import prepare_demo

    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    capsys.readouterr()
    code = train.main(["--stage", "finetune", "--data-dir", str(tmp_path / "data"), "--workdir",
                       str(read_only / "run"), "--steps", "1", "--batch-size", "4", "--max-seconds", "0.5", "--quiet"])
    line = one_error_line(capsys)
    assert code == 2 and f"cannot write in {read_only / 'run'} ({WHY})" in line and "--workdir" in line


def test_evaluate_default_output_inside_a_read_only_checkpoint(read_only, tmp_path, capsys):
    from exhubert_jax.data.demo.synthetic import prepare_demo

    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    capsys.readouterr()
    code = evaluate.main(["--corpus", "demo-a", "--checkpoint", str(read_only / "ckpt"), "--data-dir",
                          str(tmp_path / "data"), "--bootstrap", "0"])
    line = one_error_line(capsys)
    assert code == 2 and line == (f"error: cannot write in {read_only / 'ckpt' / 'eval'} ({WHY}); choose another "
                                  "place with --out")


def test_prepare_out_in_a_read_only_place(read_only, tmp_path, capsys):
    manifest = make_corpus(tmp_path / "src")
    code = prepare_main(["--corpus", "toy", "--manifest", str(manifest), "--out", str(read_only / "prepared"),
                         "--no-progress"])
    line = one_error_line(capsys)
    assert code == 2 and line == f"error: cannot write in {read_only / 'prepared'} ({WHY}); choose another place " \
                                 "with --out"


def test_evaluate_comparison_out_in_a_read_only_place(read_only, tmp_path, capsys):
    from exhubert_jax.data.demo.synthetic import prepare_demo

    prepare_demo(tmp_path / "data", n_per_class=1, n_speakers=4, log=lambda s: None)
    capsys.readouterr()
    other = save_pretrained(tmp_path / "other", preset("tiny"), init_params(preset("tiny"), 1))
    code = evaluate.main(["--corpus", "demo-a", "--checkpoint", f"{read_only / 'ckpt'},{other}", "--data-dir",
                          str(tmp_path / "data"), "--bootstrap", "0", "--out", str(read_only / "table")])
    line = one_error_line(capsys)
    assert code == 2 and line == f"error: cannot write in {read_only / 'table'} ({WHY}); choose another place with --out"
