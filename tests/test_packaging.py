"""The repository builds as a wheel a researcher can install next to their own stack: only the packages
exhubert_jax and converters at the top level (no train/evaluate modules to shadow Hugging Face's `evaluate`),
console scripts pointing into the package, dependency ranges (never pins) with PyTorch, ONNX, VAD and test tools
behind extras; installed elsewhere, it imports and finds its package data."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "requirements.txt", "README.md", "train.py", "evaluate.py", "exhubert_jax", "converters")
TEST_TOOLS = ("pytest", "pytest-xdist", "execnet")
OPTIONAL = ("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "silero-vad", "peft", *TEST_TOOLS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(wheel file names, dist-info files by name, folder it was unpacked into)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # build from a copy: setuptools writes build/ and *.egg-info/ next to the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True)
    path = next((tmp / "dist").glob("exhubert_jax-*.whl"))
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        meta = {n.split("/")[-1]: zf.read(n).decode() for n in names if ".dist-info/" in n}
        zf.extractall(tmp / "site")
    return names, meta, tmp / "site"


def requirements(metadata: str) -> list[tuple[str, str, str]]:
    """(name, version spec, extra or '') of every Requires-Dist line."""
    out = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: "):
            spec, _, marker = line.removeprefix("Requires-Dist: ").partition(";")
            name = re.match(r"[A-Za-z0-9_.\-]+", spec.strip()).group(0).lower().replace("_", "-")
            extra = re.search(r'extra == "([^"]+)"', marker)
            out.append((name, spec.strip()[len(name):].strip(), extra.group(1) if extra else ""))
    return out


def test_top_level_names_are_the_two_packages(wheel):
    names, _, _ = wheel
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"exhubert_jax", "converters"}, top
    for needed in ("exhubert_jax/data/sources/label_map.csv", "converters/modeling_exhubert.py",
                   "converters/configuration_exhubert.py"):
        assert needed in names, needed
    for init in [*ROOT.glob("exhubert_jax/**/__init__.py"), *ROOT.glob("converters/**/__init__.py")]:
        assert str(init.relative_to(ROOT)) in names, f"package {init.parent.name} is missing from the wheel"


def test_console_scripts_point_into_the_package(wheel):
    _, meta, _ = wheel
    scripts = dict(re.findall(r"^(exhubert-\w+) = (\S+)$", meta["entry_points.txt"], re.M))
    assert scripts == {"exhubert-train": "exhubert_jax.cli.train:main",
                       "exhubert-evaluate": "exhubert_jax.cli.evaluate:main",
                       "exhubert-protocol": "exhubert_jax.protocols.runner:main",
                       "exhubert-prepare": "exhubert_jax.data.prepare.command:main"}


def test_dependencies_are_ranges_with_optional_parts_behind_extras(wheel):
    _, meta, _ = wheel
    reqs = requirements(meta["METADATA"])
    core = {name for name, _, extra in reqs if not extra}
    assert {"jax", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow-datasets"} <= core
    assert not core & set(OPTIONAL), f"optional packages forced on every install: {sorted(core & set(OPTIONAL))}"
    pinned = [f"{name}{spec}" for name, spec, _ in reqs if "==" in spec]
    assert not pinned, f"exact pins belong in requirements.txt, not the package: {pinned}"
    extras = {extra for _, _, extra in reqs if extra}
    assert {"torch", "onnx", "vad", "test"} <= extras
    assert {name for name, _, extra in reqs if extra == "test"} >= {"pytest", "pytest-xdist"}
    assert {name for name, _, extra in reqs if extra == "torch"} >= {"torch", "transformers"}


def test_installed_elsewhere_it_imports_and_finds_its_data(wheel):
    _, _, site = wheel
    code = ("import exhubert_jax, exhubert_jax.adapters, exhubert_jax.training.stages, exhubert_jax.protocols.runner, "
            "exhubert_jax.cli.train, exhubert_jax.cli.evaluate, converters.flax_to_torch\n"
            "from exhubert_jax.data.sources.labels import TABLE_PATH\n"
            "assert TABLE_PATH.is_file()\n"
            "import importlib.util\n"
            "assert all(s is None or not s.origin.startswith(str(exhubert_jax.__file__).rsplit('/', 2)[0]) for s in map(importlib.util.find_spec, ('train', 'evaluate')))\n"
            "print(exhubert_jax.__file__)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=site.parent, env=env, check=True, capture_output=True,
                         text=True)
    assert out.stdout.strip() == str(site / "exhubert_jax" / "__init__.py")
