"""Forward pass: our jitted Flax HuBERT vs transformers' PyTorch HuBERT, same config, weights and batch, one process.

Usage: python bench/forward.py [--preset large] [--batch 2] [--seconds 3] [--repeats 10] [--depths 24,48]
Prints one JSON line (timings in seconds; ratio = ours / PyTorch, < 1 means we are faster). Calls alternate
between the two sides. The script restarts itself with huge-page malloc (exhubert_jax.process.huge_pages; both sides run
in that process); set EXHUBERT_NO_HUGEPAGES=1 to measure without.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import audio_batch, hf_and_flax, machine, peak_rss_mb, stats, time_interleaved  # noqa: E402
from exhubert_jax.model.config import preset  # noqa: E402
from exhubert_jax.model.hubert import HubertForSequenceClassification, param_shapes  # noqa: E402
from exhubert_jax.process.huge_pages import use_hugepage_malloc  # noqa: E402


def compile_seconds(config, batch: int, samples: int) -> float:
    """Time to lower and compile the forward from abstract shapes (nothing allocated)."""
    model = HubertForSequenceClassification(config)
    fn = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m).logits)
    x = jax.ShapeDtypeStruct((batch, samples), jnp.float32)
    m = jax.ShapeDtypeStruct((batch, samples), jnp.int32)
    start = time.perf_counter()
    fn.lower(param_shapes(config), x, m).compile()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    """Run the benchmark and print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="large")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--depths", default="24,48", help="layer counts whose compile time is reported")
    args = ap.parse_args(argv)

    torch_model, config, params = hf_and_flax(args.preset)
    params = jax.device_put(params)  # converted weights are NumPy: passed as is, every call would copy them in
    x = audio_batch(args.batch, args.seconds)
    mask = np.ones_like(x, dtype=np.int32)
    model = HubertForSequenceClassification(config)
    forward = jax.jit(lambda p, a, m: model.apply({"params": p}, a, m).logits)
    xj, mj = jnp.asarray(x), jnp.asarray(mask)
    start = time.perf_counter()
    forward(params, xj, mj).block_until_ready()
    first_call = time.perf_counter() - start

    xt, mt = torch.from_numpy(x), torch.from_numpy(mask.astype(np.int64))
    with torch.inference_mode():
        times = time_interleaved({"ours": lambda: forward(params, xj, mj).block_until_ready(),
                                  "pytorch": lambda: torch_model(xt, attention_mask=mt).logits}, args.repeats)
        want = torch_model(xt, attention_mask=mt).logits.numpy()
    max_abs = float(np.abs(np.asarray(forward(params, xj, mj)) - want).max())

    depths = [int(d) for d in args.depths.split(",") if d]
    compiles = {str(d): compile_seconds(preset(args.preset, num_hidden_layers=d), args.batch, x.shape[1])
                for d in depths}
    ours_s, theirs_s = stats(times["ours"]), stats(times["pytorch"])
    result = {
        "bench": "forward", "preset": args.preset, "batch": args.batch, "seconds": args.seconds,
        "ours": ours_s, "pytorch": theirs_s, "ratio": ours_s["median_s"] / theirs_s["median_s"],
        "first_call_s": first_call, "compile_s_by_depth": compiles,
        "audio_s_per_s": {"ours": args.batch * args.seconds / ours_s["median_s"],
                          "pytorch": args.batch * args.seconds / theirs_s["median_s"]},
        "max_abs_logit_diff": max_abs, "peak_rss_mb": peak_rss_mb(), "machine": machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    use_hugepage_malloc()
    main()
