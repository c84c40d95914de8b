"""Peak memory of an ExHuBERT Large training step on CPU (float32): ours, ours with remat, PyTorch.

Usage: python bench/memory.py [--preset large] [--batch 8] [--seconds 3] [--steps 2] [--sides ours,remat,pytorch]

Each side runs in a fresh process that builds the model (BBE, one ZLL copy per layer, originals frozen), its AdamW
state and `steps` train steps on a batch of noise; it reports peak RSS (ru_maxrss) and the RSS after the imports,
so the difference is what the model, optimiser and step cost. One JSON line. Both sides get huge-page malloc.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULT = "RESULT "
SIDES = ("ours", "remat", "pytorch")


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process, MiB."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def expanded_config(preset_name: str):
    """ExHuBERT config with LayerDrop off (a skipped layer would lower the peak at random)."""
    from exhubert_jax.model.config import preset
    return preset(preset_name, layerdrop=0.0, expansion_copies=1, expansion_style="zll")


def run_ours(args, remat: bool) -> None:
    """Our jitted, donated float32 train step."""
    import jax

    from bench.common import audio_batch
    from exhubert_jax.data.audio import SAMPLE_RATE
    from exhubert_jax.model.expansion import expand
    from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params
    from exhubert_jax.training.optimizer import make_optimizer
    from exhubert_jax.training.step import create_state, make_train_step
    plain = expanded_config(args.preset).replace(expansion_copies=0, expansion_style=None)
    params, config, labels = expand(init_params(plain, 0), plain, copies=1, style="zll")
    tx = make_optimizer(labels, 1e-5)
    step, _ = make_train_step(HubertForSequenceClassification(config, remat=remat), tx, labels)
    state = create_state(params, tx, 0)
    del params
    batch = jax.device_put({"input_values": audio_batch(args.batch, args.seconds),
                            "attention_mask": jax.numpy.ones((args.batch, int(args.seconds * SAMPLE_RATE)), "int32"),
                            "targets": jax.numpy.arange(args.batch) % 6, "weights": jax.numpy.ones(args.batch)})
    for _ in range(args.steps):
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])


def run_pytorch(args) -> None:
    """transformers-based expanded module, AdamW over the same trainable parameters."""
    import numpy as np
    import torch

    from bench.common import audio_batch, torch_expanded
    from bench.train_step import trainable_torch_names
    from exhubert_jax.model.hubert import param_shapes
    from exhubert_jax.model.param_labels import param_labels
    config = expanded_config(args.preset)
    shapes = param_shapes(config)
    names = trainable_torch_names(config, shapes, param_labels(shapes, config))
    model = torch_expanded(config).train()
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
    x = torch.from_numpy(audio_batch(args.batch, args.seconds))
    mask = torch.ones(x.shape, dtype=torch.long)
    y = torch.from_numpy(np.arange(args.batch) % 6).long()
    for _ in range(args.steps):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x, attention_mask=mask)["logits"], y).backward()
        opt.step()


def child(args) -> None:
    """Measure one side in this process and print its RESULT line."""
    import jax  # noqa: F401  (imported by both sides: part of the baseline)
    import torch  # noqa: F401
    baseline, _ = rss_mib()
    start = time.perf_counter()
    if args.side == "pytorch":
        run_pytorch(args)
    else:
        run_ours(args, remat=args.side == "remat")
    _, peak = rss_mib()
    print(RESULT + json.dumps({"side": args.side, "peak_rss_mib": peak, "baseline_rss_mib": baseline,
                               "model_step_mib": peak - baseline, "wall_s": time.perf_counter() - start}),
          flush=True)


def main(argv=None) -> dict:
    """Run every side in its own process; print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="large")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        child(args)
        return {}
    from exhubert_jax.process.huge_pages import hugepage_env
    env = hugepage_env(dict(os.environ)) or dict(os.environ)
    results = []
    for side in args.sides.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--preset", args.preset,
               "--batch", str(args.batch), "--seconds", str(args.seconds), "--steps", str(args.steps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
        results.append(json.loads(lines[-1][len(RESULT):]) if lines else
                       {"side": side, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"})
    out = {"bench": "memory", "preset": args.preset, "batch": args.batch, "seconds": args.seconds,
           "dtype": "float32", "results": results}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
