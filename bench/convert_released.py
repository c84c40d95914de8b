"""Convert a full-size checkpoint (random weights of the real shapes): the wall time and the peak RSS over the
import baseline of `python -m converters.torch_to_flax`, and of the export back with `converters.flax_to_torch`.

    python bench/convert_released.py --workdir /tmp/exhubert-full [--layout released|large] [--safetensors]
    python bench/convert_released.py --workdir /tmp/exhubert-full --import-only --code /tmp/older-tree

--layout released (default): the released ExHuBERT's layout, 48 layers of HuBERT Large with a gate each, from the
test replica of that layout (tests/released_replica.py), exported back with --layout released. --layout large: a
transformers HubertForSequenceClassification of HuBERT Large's shapes (24 layers). Both are built on the meta device
so no random init runs; the tensors are then filled from numpy. Each step runs in a process of its own, which
imports what the converters import, records its peak RSS (the import baseline), runs the command's main() and
records the peak again. --code runs the steps with another copy of the repository (an older version, to compare
on the same machine). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
# The child: the import baseline, then one command's main(), timed; prints {"base_kib", "peak_kib", "wall_s"}. The
# peak is VmHWM, this process's own: getrusage's ru_maxrss would start from the parent's RSS at fork.
CHILD = """
import json, re, sys, time
sys.path[:0] = [sys.argv[1]]
import jax, numpy, torch  # noqa: F401
from converters import flax_to_torch, torch_to_flax
def peak():
    return int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read()).group(1))
command = {"import": torch_to_flax, "export": flax_to_torch}[sys.argv[2]]
base = peak()
start = time.perf_counter()
code = command.main(sys.argv[3:])
wall = time.perf_counter() - start
print(json.dumps({"code": code, "base_kib": base, "peak_kib": peak(), "wall_s": wall}))
"""


def large_config(layers: int):
    """transformers' HubertConfig of HuBERT Large's shapes with `layers` layers and a 6-class head."""
    from transformers import HubertConfig

    return HubertConfig(hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16, intermediate_size=4096,
                        feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, num_labels=6)


def write_checkpoint(out: Path, layout: str, safetensors: bool, seed: int = 0) -> int:
    """A checkpoint directory (config.json + weights) of the layout's real shapes; returns its parameter count."""
    import torch
    from released_replica import ReleasedReplica, save_released
    from transformers import HubertForSequenceClassification

    with torch.device("meta"):
        model = ReleasedReplica(large_config(48)) if layout == "released" else \
            HubertForSequenceClassification(large_config(24))
    model = model.to_empty(device="cpu")
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(0.02 * rng.standard_normal(p.shape, np.float32)))
    if layout == "released":
        save_released(model, out, safe=safetensors)
    else:
        model.save_pretrained(out)
        if not safetensors:  # transformers 5 writes safetensors only: the .bin as torch.save writes it
            torch.save(model.state_dict(), out / "pytorch_model.bin")
            (out / "model.safetensors").unlink()
    return sum(p.numel() for p in model.parameters())


def measured(code: Path, step: str, *argv: str) -> dict:
    """Run one step in a child process: its exit code, import baseline, peak RSS and wall time."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(code), step, *argv], cwd=code, capture_output=True,
                         text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"{step} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    """Write the checkpoint, convert it, export it back; one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/exhubert-full")
    ap.add_argument("--layout", choices=("released", "large"), default="released")
    ap.add_argument("--safetensors", action="store_true", help="model.safetensors instead of pytorch_model.bin")
    ap.add_argument("--import-only", action="store_true", help="no export back")
    ap.add_argument("--code", default=str(ROOT), help="the repository copy whose converters run (default: this one)")
    args = ap.parse_args()
    work, code = Path(args.workdir), Path(args.code)
    source = work / f"{args.layout}-{'safetensors' if args.safetensors else 'bin'}"
    n = write_checkpoint(source, args.layout, args.safetensors) if not (source / "config.json").exists() else None
    weights = next(p for p in source.iterdir() if p.name != "config.json")
    size = weights.stat().st_size
    steps = {"import": measured(code, "import", str(source), str(work / "jax"))}
    if not args.import_only:
        layout = ["--layout", "released"] if args.layout == "released" else []
        steps["export"] = measured(code, "export", str(work / "jax"), str(work / "back"), *layout)
    out = {"layout": args.layout, "params": n, "weights_file": weights.name, "weights_gb": round(size / 1e9, 3),
           "code": str(code), "load_avg": os.getloadavg()[0]}
    for step, r in steps.items():
        over = (r["peak_kib"] - r["base_kib"]) * 1024
        out[step] = {"wall_s": round(r["wall_s"], 1), "base_gib": round(r["base_kib"] / 2 ** 20, 2),
                     "peak_gib": round(r["peak_kib"] / 2 ** 20, 2), "over_base_gib": round(over / 2 ** 30, 2),
                     "over_base_x_file": round(over / size, 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
