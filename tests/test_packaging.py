"""The repository builds as a wheel holding the packages, package data and console scripts, importable elsewhere."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "requirements.txt", "README.md", "train.py", "evaluate.py", "exhubert_jax", "converters")


def test_wheel_contents_and_import_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # build from a copy: setuptools writes build/ and *.egg-info/ next to the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("exhubert_jax-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = {n.split("/")[-1]: zf.read(n).decode() for n in names if ".dist-info/" in n}
        zf.extractall(tmp_path / "site")
    for needed in ("exhubert_jax/data/label_map.csv", "converters/modeling_exhubert.py",
                   "converters/configuration_exhubert.py", "train.py", "evaluate.py"):
        assert needed in names, needed
    for init in [*ROOT.glob("exhubert_jax/**/__init__.py"), *ROOT.glob("converters/**/__init__.py")]:
        assert str(init.relative_to(ROOT)) in names, f"package {init.parent.name} is missing from the wheel"
    assert "exhubert-train = train:main" in meta["entry_points.txt"]
    assert "exhubert-evaluate = evaluate:main" in meta["entry_points.txt"]
    assert "exhubert-protocol = exhubert_jax.protocol:main" in meta["entry_points.txt"]
    assert "Requires-Dist: jax==" in meta["METADATA"]
    code = ("import exhubert_jax, exhubert_jax.adapters, exhubert_jax.stages, exhubert_jax.protocol, "
            "converters.flax_to_torch\n"
            "import train, evaluate\n"
            "from exhubert_jax.data.labels import TABLE_PATH\n"
            "assert TABLE_PATH.is_file() and callable(train.main) and callable(evaluate.main)\n"
            "print(exhubert_jax.__file__)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True)
    assert out.stdout.strip() == str(tmp_path / "site" / "exhubert_jax" / "__init__.py")
