"""Inference latency: onnxruntime (our ONNX export) vs our jitted JAX forward vs PyTorch eager, one process.

Usage: python bench/onnx_latency.py [--preset large] [--batches 1,8] [--seconds 3] [--repeats 6] [--workdir DIR]
The model is a random transformers HubertForSequenceClassification of the preset's shape; ours is converted from
it and exported with converters.to_onnx (huge-page malloc as in the other benches). For each batch the three runtimes alternate call by call (masks of ones).
Prints one JSON line: p50/p95 latency and audio-seconds per second per runtime and batch, the ONNX file's size, the
export time, and the peak RSS of a fresh process that loads the file into an onnxruntime session.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import audio_batch, hf_and_flax, machine, peak_rss_mb, time_interleaved  # noqa: E402
from converters.onnx_io import LOGITS, run, session  # noqa: E402
from converters.to_onnx import export_onnx  # noqa: E402
from exhubert_jax.model.hubert import HubertForSequenceClassification  # noqa: E402
from exhubert_jax.process.huge_pages import use_hugepage_malloc  # noqa: E402

LOAD_RSS = """import json, re, sys, time
rss = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
import onnxruntime as ort
base, start = rss(), time.perf_counter()
ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(json.dumps({"import_peak_rss_mb": base, "load_peak_rss_mb": rss(), "load_s": time.perf_counter() - start}))
"""


def percentiles(times: list[float], batch: int, seconds: float) -> dict:
    """p50/p95 latency (linear interpolation over the repeats) and audio-seconds per second at the p50."""
    p50, p95 = (float(np.percentile(times, q)) for q in (50, 95))
    return {"p50_s": p50, "p95_s": p95, "audio_s_per_s": batch * seconds / p50, "n": len(times)}


def load_rss(path: Path) -> dict:
    """Peak RSS (VmHWM: getrusage's maximum survives exec) of a fresh Python process that imports onnxruntime and
    then loads `path` (MiB); plain malloc, as a deployment would run it (huge-page malloc rounds heaps up)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", LOAD_RSS, str(path)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def runtimes(torch_model, config, params, path: Path):
    """{name: fn(x, mask) -> logits as numpy} for onnxruntime, jitted JAX and PyTorch eager."""
    sess = session(path, threads=torch.get_num_threads())
    model = HubertForSequenceClassification(config)
    forward = jax.jit(lambda p, a, m: model.apply({"params": p}, a, m).logits)

    def pytorch(x, m):
        with torch.inference_mode():
            return torch_model(torch.from_numpy(x), attention_mask=torch.from_numpy(m.astype(np.int64))).logits.numpy()

    return {"onnxruntime": lambda x, m: run(sess, x, m)[LOGITS],
            "jax": lambda x, m: np.asarray(forward(params, jnp.asarray(x), jnp.asarray(m))),
            "pytorch": pytorch}


def measure(fns: dict, batch: int, seconds: float, repeats: int) -> dict:
    """Interleaved timings of every runtime on one batch, and each one's max-abs logit difference to JAX's."""
    x = audio_batch(batch, seconds, seed=batch)
    mask = np.ones(x.shape, np.int32)
    start = time.perf_counter()
    want = fns["jax"](x, mask)
    first_jax = time.perf_counter() - start
    times = time_interleaved({name: (lambda f=f: f(x, mask)) for name, f in fns.items()}, repeats)
    out = {name: percentiles(t, batch, seconds) for name, t in times.items()}
    for name, f in fns.items():
        out[name]["max_abs_logit_diff_vs_jax"] = float(np.abs(f(x, mask) - want).max())
    return {"batch": batch, "seconds": seconds, "jax_first_call_s": first_jax, **out}


def main(argv=None) -> dict:
    """Run the benchmark and print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="large")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--workdir", help="where the ONNX file is written (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="use WORKDIR's file from an earlier run of the same preset "
                                                         "(same seed, so the same weights) instead of exporting again")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.workdir or tmp) / f"hubert-{args.preset}.onnx"
        torch_model, config, params = hf_and_flax(args.preset)
        start = time.perf_counter()
        reuse = args.reuse and args.workdir and path.is_file()
        summary = {"bytes": path.stat().st_size, "files": [path]} if reuse else export_onnx(params, config, path)
        export_s = None if reuse else time.perf_counter() - start
        loading = load_rss(path)
        fns = runtimes(torch_model, config, jax.device_put(params), path)
        del params
        results = [measure(fns, int(b), args.seconds, args.repeats) for b in args.batches.split(",")]
    result = {"bench": "onnx", "preset": args.preset, "onnx_bytes": summary["bytes"], "onnx_files": len(summary["files"]),
              "export_s": export_s, **loading, "results": results, "peak_rss_mb": peak_rss_mb(),
              "onnxruntime": __import__("onnxruntime").__version__, "machine": machine()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    use_hugepage_malloc()
    main()
