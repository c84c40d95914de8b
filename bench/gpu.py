"""GPU training benchmark: ExHuBERT Large in bf16, ours (jitted) against PyTorch AMP on the same GPU, one command.

Usage: python bench/gpu.py [--batches 8,32] [--seconds 3] [--steps 20] [--peak-tflops N] [--preset large]

On a CUDA machine, for each batch size (padded batches: row lengths from the full length down to half of it):
steps/s, model-FLOPs utilisation (FLOPs from XLA's cost analysis), peak device memory, cuDNN fused attention vs
XLA attention (jax.nn.dot_product_attention), and PyTorch with torch.autocast(bfloat16) and fused AdamW; plus the
bf16 model's logits against the float32 model's. Every measurement runs in its own process, so peak memory is its
own and an out-of-memory error costs one line only. Without a GPU it says so and runs a tiny preset on CPU as a
smoke test. Prints one JSON line per measurement, then a summary line.

Both sides: ExHuBERT (BBE, one ZLL copy per layer, originals frozen), LayerDrop and attention dropout off (cuDNN
fused attention has no dropout), AdamW at 1e-5 on the trainable parameters.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--job" not in sys.argv:
    # The parent only looks for a GPU; leave the device memory to the measuring processes.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402
from exhubert_jax.data.audio import SAMPLE_RATE  # noqa: E402

LR = 1e-5
RESULT = "RESULT "
# Dense bf16 tensor-core peak, FLOP/s, by a substring of jax's device_kind (first match wins).
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12))
GPU_PRESET = dict(preset="large", batches=(8, 32), seconds=3.0, steps=20, attention=("cudnn", "xla"))
CPU_PRESET = dict(preset="tiny", batches=(2,), seconds=0.5, steps=2, attention=("xla",))


def peak_flops(device_kind: str, override_tflops: float | None) -> float | None:
    """Peak bf16 FLOP/s for MFU: --peak-tflops if given, else the table above, else None (MFU not reported)."""
    if override_tflops:
        return override_tflops * 1e12
    return next((v for name, v in PEAK_BF16 if name.lower() in device_kind.lower()), None)


def padded_batch(batch: int, seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Noise audio whose rows run from the full length down to half of it (zero-padded, masked), with labels."""
    samples = int(seconds * SAMPLE_RATE)
    lengths = np.linspace(samples, samples // 2, batch).astype(int) if batch > 1 else np.array([samples])
    mask = (np.arange(samples)[None, :] < lengths[:, None]).astype(np.int32)
    x = np.random.default_rng(seed).standard_normal((batch, samples)).astype(np.float32) * mask.astype(np.float32)
    return {"input_values": x, "attention_mask": mask, "targets": np.arange(batch, dtype=np.int32) % 6,
            "weights": np.ones(batch, np.float32)}


def expanded_model(preset_name: str):
    """(params, config, labels) of a randomly initialised ExHuBERT: HuBERT + BBE with one ZLL copy per layer."""
    from exhubert_jax.model.config import preset
    from exhubert_jax.model.expansion import expand
    from exhubert_jax.model.hubert import init_params
    config = preset(preset_name, layerdrop=0.0, attention_dropout=0.0)
    return expand(init_params(config, 0), config, copies=1, style="zll")


def train_step(config, labels, dtype, attention, unroll: int = 1):
    """Our jitted, donated train step for this model and attention backend."""
    from exhubert_jax.model.hubert import HubertForSequenceClassification
    from exhubert_jax.training.optimizer import make_optimizer
    from exhubert_jax.training.step import make_train_step
    model = HubertForSequenceClassification(config, dtype=dtype, attention_implementation=attention,
                                            scan_unroll=unroll)
    tx = make_optimizer(labels, LR)
    step, _ = make_train_step(model, tx, labels)
    return step, tx


def step_flops(config, batch: dict, dtype) -> float:
    """Model FLOPs of one train step from XLA's cost analysis.

    XLA counts a while loop's body once, so the layer loop is corrected with a two-group model:
    total = cost(G groups, loop) + (G - 1) * (cost(2 groups, unrolled) - cost(2 groups, loop)). Attention runs
    through XLA here: a cuDNN custom call carries no FLOP count.
    """
    import jax

    from exhubert_jax.model.hubert import param_shapes
    from exhubert_jax.model.param_labels import param_labels
    from exhubert_jax.training.step import create_state

    @functools.cache
    def cost(cfg, unroll):
        shapes = param_shapes(cfg)
        step, tx = train_step(cfg, param_labels(shapes, cfg), dtype, "xla", unroll)
        state = jax.eval_shape(lambda p: create_state(p, tx, 0), shapes)
        analysis = step.lower(state, batch).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        return float(analysis["flops"])

    groups = config.num_hidden_layers
    two = config.replace(num_hidden_layers=2)
    per_group = cost(two, 2) - cost(two, 1)
    return cost(config, 1) + (groups - 1) * per_group


def job_ours(args, spec: dict) -> dict:
    """Time our bf16 train step with one attention backend; peak device memory."""
    import jax
    import jax.numpy as jnp

    from exhubert_jax.training.step import create_state
    params, config, labels = expanded_model(args.preset)
    step, tx = train_step(config, labels, jnp.bfloat16, spec["attention"])
    batch = jax.device_put(padded_batch(spec["batch"], args.seconds))
    state = create_state(params, tx, 0)
    del params
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    for _ in range(2):  # warm-up
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    per_step = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics["loss"])
        per_step.append(time.perf_counter() - t0)
    start = time.perf_counter()
    for _ in range(args.steps):  # back to back: what a training loop sees
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - start
    device = jax.devices()[0]
    mem = device.memory_stats() or {}
    return {"steps_per_s": args.steps / elapsed, "step_median_s": statistics.median(per_step),
            "step_min_s": min(per_step), "step_max_s": max(per_step), "compile_s": compile_s,
            "loss_finite": bool(np.isfinite(float(metrics["loss"]))),
            "peak_memory_gib": mem["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in mem else None}


def job_pytorch(args, spec: dict) -> dict:
    """Time a PyTorch AMP (bf16 autocast) train step with fused AdamW, same model and batch; peak memory."""
    import torch

    from bench.common import torch_expanded
    from bench.train_step import trainable_torch_names
    params, config, labels = expanded_model(args.preset)
    names = trainable_torch_names(config, params, labels)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = torch_expanded(config, params)
    del params
    model.to(device).train()
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=cuda)
    arrays = padded_batch(spec["batch"], args.seconds)
    x = torch.from_numpy(arrays["input_values"]).to(device)
    mask = torch.from_numpy(arrays["attention_mask"]).long().to(device)
    y = torch.from_numpy(arrays["targets"]).long().to(device)

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x, attention_mask=mask)["logits"]
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(2):
        run()
    sync()
    per_step = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        run()
        sync()
        per_step.append(time.perf_counter() - t0)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = run()
    sync()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": args.steps / elapsed, "step_median_s": statistics.median(per_step),
            "step_min_s": min(per_step), "step_max_s": max(per_step),
            "loss_finite": bool(torch.isfinite(loss).item()), "attn_implementation": model.config._attn_implementation,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def job_flops(args, spec: dict) -> dict:
    """Model FLOPs per train step at this batch size."""
    import jax
    import jax.numpy as jnp
    from exhubert_jax.model.config import preset
    config = preset(args.preset, layerdrop=0.0, attention_dropout=0.0, expansion_copies=1, expansion_style="zll")
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in padded_batch(spec["batch"], args.seconds).items()}
    return {"flops_per_step": step_flops(config, batch, jnp.bfloat16)}


def job_parity(args, spec: dict) -> dict:
    """bf16 model logits (each attention backend) against the float32 model's, same weights and padded batch."""
    import jax
    import jax.numpy as jnp

    from exhubert_jax.model.hubert import HubertForSequenceClassification
    params, config, _ = expanded_model(args.preset)
    params = jax.device_put(params)
    arrays = padded_batch(spec["batch"], args.seconds)
    x, mask = jnp.asarray(arrays["input_values"]), jnp.asarray(arrays["attention_mask"])

    def logits(dtype, attention):
        model = HubertForSequenceClassification(config, dtype=dtype, attention_implementation=attention)
        fn = jax.jit(lambda p: model.apply({"params": p}, x, mask).logits)
        with jax.default_matmul_precision("highest" if dtype == jnp.float32 else "default"):
            return np.asarray(fn(params), np.float64)

    want = logits(jnp.float32, "xla")
    out = {"float32_logit_absmax": float(np.abs(want).max())}
    for attention in args.attention:
        got = logits(jnp.bfloat16, attention)
        out[f"bf16_{attention}_max_abs_diff"] = float(np.abs(got - want).max())
        out[f"bf16_{attention}_argmax_agree"] = float((got.argmax(-1) == want.argmax(-1)).mean())
    return out


JOBS = {"ours": job_ours, "pytorch": job_pytorch, "flops": job_flops, "parity": job_parity}


def plan(args) -> list[dict]:
    """Every measurement, in the order run."""
    specs = [{"job": "parity", "batch": min(args.batches)}]
    for b in args.batches:
        specs.append({"job": "flops", "batch": b})
        specs += [{"job": "ours", "batch": b, "attention": a} for a in args.attention]
        specs.append({"job": "pytorch", "batch": b})
    return specs


def run_job(args, spec: dict) -> dict:
    """Run one measurement here and return its record (errors are recorded, not raised)."""
    start = time.perf_counter()
    try:
        result = JOBS[spec["job"]](args, spec)
    except Exception as e:  # one failing measurement (e.g. out of memory) must not hide the others
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    return {**spec, **result, "wall_s": time.perf_counter() - start}


def run_isolated(args, spec: dict) -> dict:
    """Run one measurement in a fresh process (its own device memory and peak)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--job", json.dumps(spec), "--preset", args.preset,
           "--seconds", str(args.seconds), "--steps", str(args.steps), "--attention", ",".join(args.attention)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE" or args.user_prealloc}
    if spec["job"] == "pytorch":
        env["JAX_PLATFORMS"] = "cpu"  # JAX only builds the weights there; keep it off the GPU
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**spec, "error": f"exit {proc.returncode}: {' | '.join(tail)[:500]}"}


def summarise(records: list[dict], peak: float | None) -> dict:
    """MFU per run and the ratios the targets are stated in (ours/PyTorch steps/s, best attention)."""
    flops = {r["batch"]: r.get("flops_per_step") for r in records if r["job"] == "flops"}
    rows = []
    for r in records:
        if r["job"] in ("ours", "pytorch") and "steps_per_s" in r:
            f = flops.get(r["batch"])
            r["mfu"] = f * r["steps_per_s"] / peak if (f and peak) else None
            r["model_tflops_per_s"] = f * r["steps_per_s"] / 1e12 if f else None
    for b in sorted(flops):
        ours = [r for r in records if r["job"] == "ours" and r["batch"] == b and "steps_per_s" in r]
        torch_r = [r for r in records if r["job"] == "pytorch" and r["batch"] == b and "steps_per_s" in r]
        best = max(ours, key=lambda r: r["steps_per_s"]) if ours else None
        rows.append({"batch": b, "best_attention": best and best["attention"],
                     "ours_steps_per_s": best and best["steps_per_s"], "ours_mfu": best and best.get("mfu"),
                     "pytorch_steps_per_s": torch_r[0]["steps_per_s"] if torch_r else None,
                     "speedup_vs_pytorch_amp": (best["steps_per_s"] / torch_r[0]["steps_per_s"]
                                                if best and torch_r else None)})
    return {"summary": rows, "targets": {"mfu": 0.45, "speedup_vs_pytorch_amp": 2.0}}


def main(argv=None) -> dict:
    """Detect the GPU, run every measurement, print the JSON lines; returns the summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="model preset (default: large on a GPU, tiny on CPU)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 8,32; 2 on CPU)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds of audio per row (default 3; 0.5 on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 20; 2 on CPU)")
    ap.add_argument("--attention", default=None, help="attention backends (default cudnn,xla; xla on CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU")
    ap.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.job:  # a child: one measurement, one RESULT line
        args.attention = args.attention.split(",")
        print(RESULT + json.dumps(run_job(args, json.loads(args.job))), flush=True)
        return {}

    import jax
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    defaults = GPU_PRESET if gpus else CPU_PRESET
    args.preset = args.preset or defaults["preset"]
    args.batches = [int(b) for b in args.batches.split(",")] if args.batches else list(defaults["batches"])
    args.seconds = args.seconds or defaults["seconds"]
    args.steps = args.steps or defaults["steps"]
    args.attention = args.attention.split(",") if args.attention else list(defaults["attention"])
    args.user_prealloc = "XLA_PYTHON_CLIENT_PREALLOCATE" in os.environ and os.environ.get(
        "XLA_PYTHON_CLIENT_PREALLOCATE") != "false"
    device = gpus[0] if gpus else jax.devices()[0]
    header = {"bench": "gpu", "gpu_found": bool(gpus), "device": device.device_kind, "jax": jax.__version__,
              "preset": args.preset, "batches": args.batches, "seconds": args.seconds, "steps": args.steps,
              "dtype": "bfloat16"}
    if not gpus:
        header["note"] = (f"no GPU found (jax devices: {[d.platform for d in jax.devices()]}); "
                          f"smoke test of the {args.preset} preset on CPU, figures mean nothing")
    print(json.dumps(header), flush=True)
    records = []
    for spec in plan(args):
        record = run_isolated(args, spec) if gpus else run_job(args, spec)
        records.append(record)
        print(json.dumps(record), flush=True)
    summary = {**header, **summarise(records, peak_flops(device.device_kind, args.peak_tflops) if gpus else None),
               "records": records}
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}), flush=True)
    return summary


if __name__ == "__main__":
    main()
