"""bench/readme_figures.py prints the README's demo figures in their fixed format (a 2-step run here)."""

import re

import pytest

from bench import readme_figures

PCT = r"\d+\.\d"


@pytest.mark.slow
def test_prints_each_figure_in_its_format(tmp_path, capsys):
    argv = ["--workdir", str(tmp_path / "demo"), "--data-dir", str(tmp_path / "data"), "--parts", "masked,card",
            "--train-args", "--steps", "2", "--eval-every", "1"]
    assert readme_figures.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"machine: .+, \d+ cores; jax \S+", lines[0]), lines[0]
    for seed, line in enumerate(lines[1:3]):
        run = re.escape(str(tmp_path / ("demo" if seed == 0 else "demo-seed1")))
        assert re.fullmatch(rf"training \({run}, seed {seed}\): best mean validation UAR 0\.\d{{3}} at step [12], "
                            r"final 0\.\d{3} at step 2", line), line
    corpora = rf"\(demo-a {PCT}, demo-b {PCT}, demo-c {PCT}\)"
    for part in ("masked", "card"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"test UAR, --input {part}"))
        assert re.fullmatch(rf"test UAR, --input {part}, seeds 0, 1: {PCT}-{PCT} %", lines[at]), lines[at]
        for seed in (0, 1):
            assert re.fullmatch(rf"  seed {seed}: mean {PCT} % {corpora}", lines[at + 1 + seed]), lines[at + 1 + seed]
    assert "| **Average over all datasets** | 54 |" in "\n".join(lines)


def test_unknown_parts_are_refused(capsys):
    with pytest.raises(SystemExit):
        readme_figures.parse_args(["--parts", "masked,cards"])
    assert "unknown cards" in capsys.readouterr().err


def test_seeds_always_include_seed_0_and_must_be_integers(capsys):
    assert readme_figures.parse_args(["--seeds", "2,1"]).seeds == [0, 1, 2]
    with pytest.raises(SystemExit):
        readme_figures.parse_args(["--seeds", "one"])
    assert "--seeds: comma-separated integers" in capsys.readouterr().err
