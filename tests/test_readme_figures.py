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
    assert re.fullmatch(rf"training \({re.escape(str(tmp_path / 'demo'))}, seed 0\): best mean validation UAR "
                        r"0\.\d{3} at step [12], final 0\.\d{3} at step 2", lines[1]), lines[1]
    corpora = rf"\(demo-a {PCT}, demo-b {PCT}, demo-c {PCT}\)"
    assert re.fullmatch(rf"test UAR, --input masked: mean {PCT} % {corpora}", lines[2]), lines[2]
    assert "| **Average over all datasets** | 54 |" in "\n".join(lines)
    assert re.fullmatch(rf"test UAR, --input card: mean {PCT} % {corpora}", lines[-1]), lines[-1]


def test_unknown_parts_are_refused(capsys):
    with pytest.raises(SystemExit):
        readme_figures.parse_args(["--parts", "masked,cards"])
    assert "unknown cards" in capsys.readouterr().err
