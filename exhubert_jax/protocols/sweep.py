"""A sweep: train.py over a grid of option values on one base config, each cell a run of the protocol runner
(resumable; a finished cell is never run again), tested on one corpus's test split, and reported in one table with
each cell's metrics and intervals and a paired test of every cell against a baseline cell.

    python -m exhubert_jax.protocol sweep --config sweep.yaml

    # sweep.yaml
    corpus: demo-a                      # scored on its test split
    workdir: runs/sweep
    base: {stage: finetune, corpora: demo-a, steps: 200, quiet: true}   # train.py's options, as in its --config
    grid: {lr: [0.001, 0.002], batch_size: [4, 8]}                      # every combination is a cell
    baseline: lr=0.002,batch_size=8     # the cell every other one is tested against (default: the first)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from exhubert_jax.protocols.runs import ProtocolError, Run, Stage, run_protocol
from exhubert_jax.process.options import config_values, dest_of, flag_of, known_keys, option, read_config

SWEEP_KEYS = ("base", "grid")  # the file's structured keys; the rest are SweepOptions


@dataclasses.dataclass
class SweepOptions:
    """What a sweep scores and where it runs (the file's base and grid say what it trains)."""

    corpus: str | None = option(None, help="sweep: the prepared corpus whose test split scores every cell")
    workdir: str = option("runs/sweep", help="sweep: its folder; one run folder per cell inside it")
    baseline: str | None = option(None, help="sweep: the cell every other is tested against, as its name "
                                             "(key=value,...; default: the first cell)")
    data_dir: str | None = option(None, help="prepared corpora (default $EXHUBERT_DATA or data/prepared)")
    input: str = option("masked", choices=("masked", "card"), help="input protocol of the test evaluations")
    batch_size: int = option(8, type=int, help="evaluation batch size")
    bootstrap: int = option(1000, type=int, metavar="N", help="bootstrap and randomisation resamples of the table")
    seed: int = option(0, type=int, help="seed of the resamples")


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order the grid lists them (the last key varies fastest)."""
    if not grid:
        raise ProtocolError("sweep: the config's grid is empty; give at least one option with a list of values")
    lists = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in grid.items()}
    return [dict(zip(lists, values)) for values in itertools.product(*lists.values())]


def cell_name(cell: Mapping[str, Any]) -> str:
    """The cell's name and folder: key=value,... (no path separators)."""
    return ",".join(f"{k}={v}" for k, v in cell.items()).replace("/", "_")


def train_argv(options: Mapping[str, Any], source: str) -> list[str]:
    """train.py's flags for a mapping of its options (checked as its --config checks them; `source` names the file)."""
    from exhubert_jax.training.options import TrainOptions, flag_text
    from exhubert_jax.training.stage_flags import StageFlags

    config_values(options, source, StageFlags, TrainOptions)  # unknown keys and bad values, in one line each
    keys, argv = known_keys(StageFlags, TrainOptions), []
    for key, value in options.items():
        field = keys[key]
        flag, action = flag_of(field), field.metadata["option"].action
        if action == "store_true":
            argv += [flag] if value else []
        elif action == "append":
            for item in value if isinstance(value, (list, tuple)) else [value]:
                argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, str(flag_text(field, value))]
    return argv


def sweep_runs(base: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], corpus: str, workdir: Path,
               data_dir: str | None, source: str) -> list[Run]:
    """One protocol run per cell: train.py on the base options with the cell's values, in WORKDIR/CELL."""
    owned = [k for k in ("workdir", "data_dir", "data-dir") if k in base or any(k in c for c in cells)]
    if owned:
        raise ProtocolError(f"sweep: {', '.join(owned)} is the sweep's own (its workdir, data_dir), not a train.py "
                            "option of the base or the grid")
    runs = []
    for cell in cells:
        folder = workdir / cell_name(cell)
        argv = train_argv({**base, **cell}, source) + ["--workdir", str(folder)]
        argv += ["--data-dir", str(data_dir)] if data_dir else []
        runs.append(Run(cell_name(cell), corpus, (Stage("test", tuple(argv), folder, "auto"),)))
    return runs


def paired_rows(results: Sequence[Mapping[str, Any]], baseline: str, n_resamples: int, seed: int) -> dict[str, dict]:
    """{cell: paired test of every registered metric against the baseline cell} on the same test utterances."""
    import numpy as np

    from exhubert_jax.evaluation import paired_tests

    by_name = {r["run"]: r["evaluations"]["test"] for r in results}
    base = by_name[baseline]
    rows = {}
    for name, result in by_name.items():
        if name == baseline:
            continue
        if result["class_names"] != base["class_names"] or len(result["targets"]) != len(base["targets"]):
            raise ProtocolError(f"sweep: cell {name} was not scored on the baseline's classes and utterances")
        preds = np.stack([np.asarray(base["preds"]), np.asarray(result["preds"])])
        rows[name], _ = paired_tests.compare_metrics(np.asarray(base["targets"]), preds, len(base["class_names"]),
                                                     None, n_resamples, seed, name=f"sweep/{name}")
    paired_tests.add_holm(list(rows.values()))
    return rows


def sweep_table(results: Sequence[Mapping[str, Any]], paired: Mapping[str, dict], baseline: str) -> str:
    """The sweep's one table (reports.cells_table) of every cell's metrics on its test utterances."""
    from exhubert_jax.evaluation.metrics import all_of, confusion_matrix
    from exhubert_jax.evaluation.reports import cells_table

    values = {}
    for r in results:
        e = r["evaluations"]["test"]
        values[r["run"]] = all_of(confusion_matrix(e["targets"], e["preds"], len(e["class_names"])))
    return cells_table(values, paired, baseline)


def run_sweep(config_path: str | Path, argv_options: Mapping[str, Any] | None = None, say=print) -> dict:
    """Run (or resume) the sweep a config file describes; write WORKDIR/sweep.md and sweep.json; return them."""
    data = read_config(config_path)
    base, grid = data.get("base") or {}, data.get("grid") or {}
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise ProtocolError(f"sweep {config_path}: base and grid must be mappings of train.py options")
    values = {**config_values({k: v for k, v in data.items() if k not in SWEEP_KEYS}, config_path, SweepOptions),
              **(argv_options or {})}
    opts = SweepOptions(**{f.name: values.get(dest_of(f), f.default) for f in dataclasses.fields(SweepOptions)})
    if not opts.corpus:
        raise ProtocolError(f"sweep {config_path}: give the corpus that scores the cells (corpus: NAME)")
    cells = grid_cells(grid)
    names = [cell_name(c) for c in cells]
    baseline = opts.baseline or names[0]
    if baseline not in names:
        raise ProtocolError(f"sweep: baseline {baseline!r} is not a cell; the cells are {', '.join(names)}")
    workdir = Path(opts.workdir)
    runs = sweep_runs(base, cells, opts.corpus, workdir, opts.data_dir, str(config_path))
    run_protocol("sweep", runs, workdir, opts.data_dir, opts.input, opts.batch_size, say)
    results = json.loads((workdir / "results.json").read_text())["utterances"]
    paired = paired_rows(results, baseline, opts.bootstrap, opts.seed)
    table = sweep_table(results, paired, baseline)
    doc = {"workdir": str(workdir), "corpus": opts.corpus, "baseline": baseline, "cells": names, "grid": grid,
           "base": base, "paired": paired, "table": table}
    from exhubert_jax.process.atomic_files import write_text

    write_text(workdir / "sweep.json", json.dumps(doc, indent=1, default=str))
    write_text(workdir / "sweep.md", f"Sweep over {', '.join(grid)} on {opts.corpus} (test split), in %; "
                                     f"differences against {baseline}, Holm-corrected over the cells\n\n{table}\n")
    return doc
