"""Training step (forward, backward, AdamW): ours (jitted, donated) vs PyTorch, same config, weights and batch.

HuBERT Large against transformers' HubertForSequenceClassification (feature encoder frozen, torch.optim.AdamW), and
ExHuBERT Large (BBE, ZLL, originals frozen) against converters.modeling_exhubert's module. One process; one JSON line.

Usage: python bench/train_step.py [--preset large] [--batch 2] [--seconds 3] [--repeats 5] [--models plain,expanded]
Steps alternate between the two sides (ExHuBERT: one side after the other, see --sequential). The script restarts itself with huge-page malloc (exhubert_jax.process.huge_pages;
both sides run in that process); set EXHUBERT_NO_HUGEPAGES=1 to measure without.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from exhubert_jax.data.audio import SAMPLE_RATE  # noqa: E402

from bench.common import audio_batch, hf_and_flax, machine, peak_rss_mb, stats, time_interleaved, torch_expanded
from converters.mapping import leaves  # noqa: E402
from exhubert_jax.model.expansion import expand  # noqa: E402
from exhubert_jax.model.expansion_layout import subtree  # noqa: E402
from exhubert_jax.model.hubert import HubertForSequenceClassification  # noqa: E402
from exhubert_jax.model.param_labels import count, param_labels
from exhubert_jax.process.huge_pages import use_hugepage_malloc  # noqa: E402
from exhubert_jax.training.optimizer import make_optimizer  # noqa: E402
from exhubert_jax.training.step import create_state, make_train_step  # noqa: E402

LR = 1e-5


def ours(config, params, labels, x, mask, y) -> tuple:
    """Our donated, jitted train step as a no-argument callable, plus its first-call time and compile count."""
    model = HubertForSequenceClassification(config)
    tx = make_optimizer(labels, LR)
    step, counter = make_train_step(model, tx, labels)
    batch = {"input_values": jax.numpy.asarray(x), "attention_mask": jax.numpy.asarray(mask),
             "targets": jax.numpy.asarray(y), "weights": jax.numpy.ones(len(y), jax.numpy.float32)}
    holder = {"state": create_state(params, tx, seed=0)}

    def run():
        holder["state"], m = step(holder["state"], batch)
        jax.block_until_ready(m["loss"])

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    return run, {"first_call_s": first, "counter": counter, "trainable": count(params, labels)}


def theirs(torch_model, trainable_names, x, mask, y) -> tuple:
    """A PyTorch train step (AdamW over the trainable parameters only) as a no-argument callable."""
    torch_model.train()
    for name, p in torch_model.named_parameters():
        p.requires_grad_(name in trainable_names)
    params = [p for p in torch_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    xt, mt, yt = torch.from_numpy(x), torch.from_numpy(mask.astype(np.int64)), torch.from_numpy(y.astype(np.int64))

    def run():
        opt.zero_grad(set_to_none=True)
        out = torch_model(xt, attention_mask=mt)
        logits = out["logits"] if isinstance(out, dict) else out.logits
        torch.nn.functional.cross_entropy(logits, yt).backward()
        opt.step()

    run()  # warm-up: allocates AdamW's state
    return run, {"trainable": sum(p.numel() for p in params)}


def trainable_torch_names(config, params, labels) -> set[str]:
    """Torch parameter names that our labels mark trainable (the same split on both sides)."""
    return {leaf.torch_key for leaf in leaves(config, params) if subtree(labels, leaf.flax_path) == "trainable"}


def compare(name, config, params, labels, torch_model, x, mask, y, repeats, interleave: bool = True) -> dict:
    """One model pair: our step vs the PyTorch step (alternating, or one side after the other to save memory)."""
    names = trainable_torch_names(config, params, labels)
    run_ours, info = ours(config, params, labels, x, mask, y)
    if interleave:
        run_theirs, theirs_info = theirs(torch_model, names, x, mask, y)
        times = time_interleaved({"ours": run_ours, "pytorch": run_theirs}, repeats, warmup=0)
    else:
        times = time_interleaved({"ours": run_ours}, repeats, warmup=0)
        del run_ours
        gc.collect()
        run_theirs, theirs_info = theirs(torch_model, names, x, mask, y)
        times.update(time_interleaved({"pytorch": run_theirs}, repeats, warmup=0))
    assert info["trainable"] == theirs_info["trainable"], (info["trainable"], theirs_info["trainable"])
    ours_s = {**stats(times["ours"]), "first_call_s": info["first_call_s"], "compiles": info["counter"].count,
              "trainable": info["trainable"]}
    theirs_s = {**stats(times["pytorch"]), "trainable": theirs_info["trainable"]}
    return {"model": name, "ours": ours_s, "pytorch": theirs_s,
            "speedup": theirs_s["median_s"] / ours_s["median_s"],
            "audio_s_per_s": {"ours": x.shape[0] * x.shape[1] / SAMPLE_RATE / ours_s["median_s"],
                              "pytorch": x.shape[0] * x.shape[1] / SAMPLE_RATE / theirs_s["median_s"]}}


def main(argv=None) -> dict:
    """Run the benchmark and print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="large")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="plain,expanded")
    ap.add_argument("--sequential", default="expanded",
                    help="models whose two sides run one after the other: both ExHuBERT sides at once need >23 GB")
    args = ap.parse_args(argv)
    x = audio_batch(args.batch, args.seconds)
    mask = np.ones(x.shape, np.int32)
    y = np.arange(args.batch, dtype=np.int32) % 6
    # LayerDrop off on both sides: a randomly skipped layer would make single-step timings noisy.
    torch_model, config, params = hf_and_flax(args.preset, layerdrop=0.0)
    results = []
    if "plain" in args.models:
        labels = param_labels(params, config)
        results.append(compare("hubert", config, params, labels, torch_model, x, mask, y, args.repeats,
                               interleave="plain" not in args.sequential))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if "expanded" in args.models:
        big, big_config, big_labels = expand(params, config, copies=1, style="zll")
        del torch_model, params
        gc.collect()
        big_torch = torch_expanded(big_config, big)
        results.append(compare("exhubert", big_config, big, big_labels, big_torch, x, mask, y, args.repeats,
                               interleave="expanded" not in args.sequential))
    out = {"bench": "train_step", "preset": args.preset, "batch": args.batch, "seconds": args.seconds,
           "results": results, "peak_rss_mb": peak_rss_mb(), "machine": machine()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    use_hugepage_malloc()
    main()
