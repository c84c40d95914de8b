"""Adapter comparison on the synthetic demo corpora, same seed and budget for every method; one Markdown table.

A tiny demo backbone is first fine-tuned on demo-a and demo-b (every layer but the CNN trains), then each method
adapts it to demo-c for the same number of steps. Each method runs in its own process so that its peak memory is
its own. Columns: trainable parameters, optimiser-state bytes, median step time (compilations excluded), peak memory
(device peak where the backend reports one, else the process's peak RSS) and best validation UAR on demo-c. A second
table gives parameters and optimiser bytes for HuBERT Large from shapes alone.

Usage: python bench/adapters.py [--steps 200] [--backbone-steps 300] [--data-dir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from bench.common import machine, peak_rss_mb  # noqa: E402

# (row name, adapter specs applied in order); {b} is the bottleneck width (8 for the demo model, 64 for Large).
METHODS = (
    ("full fine-tune", ()),
    ("bbe (zll, originals frozen)", ("bbe:copies=1,style=zll",)),
    ("lora r=8 q+v", ("lora:r=8,alpha=16,targets=q+v",)),
    ("ia3 k+v+ff1", ("ia3",)),
    ("bitfit", ("bitfit",)),
    ("bottleneck houlsby", ("bottleneck:size={b},style=houlsby",)),
    ("bottleneck pfeiffer", ("bottleneck:size={b},style=pfeiffer",)),
    ("bbe + lora", ("bbe:copies=1,style=zll", "lora:r=8,alpha=16,targets=q+v")),
)
BACKBONE_CORPORA, TARGET_CORPUS = ("demo-a", "demo-b"), "demo-c"
FLOAT_BYTES = 4


def specs_for(specs: tuple[str, ...], bottleneck: int) -> list[str]:
    """The method's specs with the bottleneck width filled in."""
    return [s.format(b=bottleneck) for s in specs]


def adapt(params, config, specs: list[str]):
    """(params, config, labels) for a method; no specs means full fine-tuning (CNN frozen)."""
    from exhubert_jax import adapters
    from exhubert_jax.model.param_labels import param_labels

    if not specs:
        return params, config, param_labels(params, config)
    return adapters.apply_spec(params, config, specs)


def optimiser_bytes(tx, params) -> int:
    """Bytes of the optimiser state for `params`, from shapes alone."""
    shapes = jax.eval_shape(tx.init, params)
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(shapes) if hasattr(x, "size"))


def device_peak_mb() -> float | None:
    """Peak device memory in MiB where the backend reports it (GPU/TPU), else None."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def run(model, params, labels, corpora: dict, steps: int, eval_every: int, opts: dict) -> dict:
    """Train `steps` round-robin steps over `corpora`'s train splits; validation UAR every `eval_every` steps."""
    from exhubert_jax.data.loading.batching import RoundRobin
    from exhubert_jax.data.loading.devices import batch_arrays, to_device
    from exhubert_jax.evaluation.predict import Predictor, validation_uar
    from exhubert_jax.training.optimizer import make_optimizer
    from exhubert_jax.training.step import create_state, make_train_step

    tx = make_optimizer(labels, opts["lr"])
    step, compiles = make_train_step(model, tx, labels)
    predictor = Predictor(model)
    state = create_state(params, tx, opts["seed"])
    stream = RoundRobin({n: c.split("train") for n, c in corpora.items()}, opts["batch_size"], opts["max_seconds"],
                        opts["seed"])
    val = {n: c.split("validation") for n, c in corpora.items()}
    times, history = [], []
    for i in range(1, steps + 1):
        arrays = to_device(batch_arrays(next(stream)), None)
        before, start = compiles.count, time.perf_counter()
        state, metrics = step(state, arrays)
        jax.block_until_ready(metrics["loss"])
        if compiles.count == before:
            times.append(time.perf_counter() - start)
        if i % eval_every == 0 or i == steps:
            uar = validation_uar(predictor, state.params, val, batch_size=opts["batch_size"],
                                 max_seconds=opts["max_seconds"])
            history.append(dict(step=i, uar=uar["mean"]))
    return dict(params=state.params, history=history, step_s=statistics.median(times) if times else float("nan"),
                compiles=compiles.count, optimiser_bytes=optimiser_bytes(tx, params))


def demo_model(seed: int):
    """The demo's tiny model (train.py's settings: no dropout or masking, group-norm CNN), randomly initialised."""
    from exhubert_jax import HubertForSequenceClassification, init_params, preset
    from exhubert_jax.model.config import EMOTION_CLASSES
    from exhubert_jax.training.stages import DEMO, DEMO_OVERRIDES

    config = preset(DEMO["preset"], label_names=EMOTION_CLASSES, **DEMO_OVERRIDES)
    return HubertForSequenceClassification(config), init_params(config, seed)


def train_backbone(data_dir: Path, out: Path, steps: int, opts: dict) -> dict:
    """Full fine-tuning of the demo model on the backbone corpora; saved to `out`."""
    from exhubert_jax import save_pretrained
    from exhubert_jax.model.param_labels import param_labels
    from exhubert_jax.training.stages import ensure_demo, open_corpora

    ensure_demo(data_dir)
    model, params = demo_model(opts["seed"])
    corpora = open_corpora(list(BACKBONE_CORPORA), data_dir)
    result = run(model, params, param_labels(params, model.config), corpora, steps, steps, opts)
    save_pretrained(out, model.config, jax.device_get(result["params"]))
    return dict(steps=steps, uar=result["history"][-1]["uar"])


def run_method(name: str, backbone: Path, data_dir: Path, steps: int, eval_every: int, opts: dict) -> dict:
    """One method on the target corpus, from the saved backbone; the JSON row of the table."""
    from exhubert_jax import from_pretrained
    from exhubert_jax.adapters import with_config
    from exhubert_jax.model.param_labels import TRAINABLE, count
    from exhubert_jax.training.stages import open_corpora

    specs = specs_for(dict(METHODS)[name], 8)
    model, params = from_pretrained(backbone)
    params, config, labels = adapt(params, model.config, specs)
    result = run(with_config(model, config), params, labels, open_corpora([TARGET_CORPUS], data_dir), steps,
                 eval_every, opts)
    best = max(result["history"], key=lambda h: h["uar"])
    device = device_peak_mb()
    return dict(method=name, specs=specs, trainable=count(params, labels, TRAINABLE), total=count(params),
                optimiser_bytes=result["optimiser_bytes"], step_ms=1000 * result["step_s"],
                peak_mb=device if device is not None else peak_rss_mb(),
                peak_kind="device" if device is not None else "process RSS", best_uar=best["uar"],
                best_step=best["step"], compiles=result["compiles"], history=result["history"])


def large_rows() -> list[dict]:
    """Parameters and optimiser bytes for HuBERT Large, from shapes alone."""
    from exhubert_jax.adapters.__main__ import abstract_apply
    from exhubert_jax.model.config import preset
    from exhubert_jax.model.hubert import param_shapes
    from exhubert_jax.model.param_labels import TRAINABLE, count, param_labels
    from exhubert_jax.training.optimizer import make_optimizer

    rows = []
    for name, specs in METHODS:
        specs = specs_for(specs, 64)
        if specs:
            shapes, _, labels = abstract_apply(preset("large"), specs)
        else:
            shapes = param_shapes(preset("large"))
            labels = param_labels(shapes, preset("large"))
        rows.append(dict(method=name, specs=specs, total=count(shapes), trainable=count(shapes, labels, TRAINABLE),
                         optimiser_bytes=optimiser_bytes(make_optimizer(labels), shapes)))
    return rows


def markdown(rows: list[dict], large: list[dict]) -> str:
    """The two Markdown tables."""
    out = ["| method | trainable params | optimiser state | step time (ms) | peak memory (MiB) | best val UAR |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['trainable']:,} | {r['optimiser_bytes'] / 1024:,.1f} KiB | "
                   f"{r['step_ms']:.1f} | {r['peak_mb']:,.0f} | {r['best_uar']:.3f} (step {r['best_step']}) |")
    out += ["", "| method (HuBERT Large) | total params | trainable params | optimiser state |", "|---|---:|---:|---:|"]
    for r in large:
        out.append(f"| {r['method']} | {r['total']:,} | {r['trainable']:,} | "
                   f"{r['optimiser_bytes'] / 2**20:,.1f} MiB |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the backbone, then every method in its own process, and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="adaptation steps per method (demo-c)")
    ap.add_argument("--backbone-steps", type=int, default=300, help="full fine-tuning steps on demo-a, demo-b")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-3, help="the demo's learning rate, for every method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", help="prepared demo corpora (made here if missing; default: a temporary folder)")
    ap.add_argument("--json", help="also write all results as JSON here")
    ap.add_argument("--methods", help="comma-separated subset of the method names")
    ap.add_argument("--_method", help=argparse.SUPPRESS)
    ap.add_argument("--_backbone", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    opts = dict(lr=args.lr, seed=args.seed, batch_size=args.batch_size, max_seconds=args.max_seconds)
    if args._method:  # child process: one method
        print(json.dumps(run_method(args._method, Path(args._backbone), Path(args.data_dir), args.steps,
                                    args.eval_every, opts)))
        return 0
    names = args.methods.split(",") if args.methods else [n for n, _ in METHODS]
    unknown = [n for n in names if n not in dict(METHODS)]
    if unknown:
        print(f"error: unknown method(s) {unknown}; choose among {[n for n, _ in METHODS]}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir or Path(tmp) / "data")
        backbone = Path(tmp) / "backbone"
        t0 = time.perf_counter()
        base = train_backbone(data_dir, backbone, args.backbone_steps, opts)
        print(f"backbone: {args.backbone_steps} steps on {', '.join(BACKBONE_CORPORA)}, validation UAR "
              f"{base['uar']:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        rows = []
        for name in names:
            cmd = [sys.executable, os.path.abspath(__file__), "--_method", name, "--_backbone", str(backbone),
                   "--data-dir", str(data_dir), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
                   "--batch-size", str(args.batch_size), "--max-seconds", str(args.max_seconds),
                   "--lr", str(args.lr), "--seed", str(args.seed)]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{name}: best UAR {rows[-1]['best_uar']:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    large = large_rows()
    print(markdown(rows, large))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(backbone=base, rows=rows, large=large, settings=vars(args),
                                                   machine=machine()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
