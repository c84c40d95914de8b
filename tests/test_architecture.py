"""The import graph of exhubert_jax and converters, read from the source (every import statement, in functions and
under TYPE_CHECKING too, and importlib.import_module calls with a literal name): no cycle, no import of the root
scripts, and each subpackage imports only the layers below it (the model never sees adapters)."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exhubert_jax", "converters")
ROOT_SCRIPTS = ("train", "evaluate")
# Lowest first; a layer imports only layers before it (and itself). The top-level `exhubert_jax` names are lazy
# and the three earlier command names (protocol, embed, expansion) are entry points, so neither is a layer.
LAYERS = ("errors", "process", "data", "model", "adapters", "pretrained", "hub", "evaluation", "training",
          "inference", "cli", "protocols", "converters")
ENTRY_POINTS = ("exhubert_jax", "exhubert_jax.protocol", "exhubert_jax.embed", "exhubert_jax.expansion")


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    for script in ROOT_SCRIPTS:
        found[script] = (ROOT / f"{script}.py", False)
    return found


def imports(name: str, path: Path, is_package: bool, known: dict) -> set[str]:
    """The known modules `name` imports, wherever in the file the import stands."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            target = node.args[0].value
            out.add(".".join(here) + target if target.startswith(".") else target)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    """Every module's imports among the project's modules."""
    known = modules()
    return {name: imports(name, path, is_package, known) for name, (path, is_package) in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module: str) -> str | None:
    """The layer a module belongs to (None for the lazy top level and the earlier command names)."""
    if module in ENTRY_POINTS or module in ROOT_SCRIPTS:
        return None
    parts = module.split(".")
    return "converters" if parts[0] == "converters" else parts[1]


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_library_never_imports_a_root_script():
    bad = sorted(f"{m} imports {s}" for m, targets in graph().items() if m not in ROOT_SCRIPTS
                 for s in targets & set(ROOT_SCRIPTS))
    assert not bad, bad


def test_each_layer_imports_only_the_layers_below():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for module, targets in graph().items():
        mine = layer(module)
        if mine is None:
            continue
        assert mine in rank, f"{module}: layer {mine!r} is not in LAYERS; place it there"
        bad += [f"{module} -> {t}" for t in sorted(targets) if layer(t) is not None and rank[layer(t)] > rank[mine]]
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_the_model_never_sees_adapters():
    bad = sorted(f"{m} -> {t}" for m, targets in graph().items() if m.startswith("exhubert_jax.model")
                 for t in targets if t.startswith("exhubert_jax.adapters"))
    assert not bad, bad


def test_the_checker_sees_every_kind_of_import(tmp_path, monkeypatch):
    """A cycle through a function-level import, a TYPE_CHECKING import and importlib.import_module is found."""
    pkg = tmp_path / "exhubert_jax"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from exhubert_jax.c import X\n")
    (pkg / "c.py").write_text("import importlib\nimportlib.import_module('exhubert_jax.a')\n")
    (tmp_path / "converters").mkdir()
    for script in ROOT_SCRIPTS:
        (tmp_path / f"{script}.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert cycles(graph()) == [["exhubert_jax.a", "exhubert_jax.b", "exhubert_jax.c"]]
