"""Convert a full-size checkpoint in the released ExHuBERT layout (random weights of the released shapes): the wall
time and peak RSS of `python -m converters.torch_to_flax`, and of the export back with --layout released.

    python bench/convert_released.py --workdir /tmp/exhubert-full [--safetensors]

The released-shape state dict comes from the test replica of that layout (tests/released_replica.py, 48 layers of
HuBERT Large plus a gate each), built on the meta device so no random init runs; the tensors are then filled from
numpy. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def write_released(out: Path, safetensors: bool, seed: int = 0) -> int:
    """A released-layout directory (config.json + weights) of HuBERT Large with 48 gated layers; returns #params."""
    import torch
    from transformers import HubertConfig

    from released_replica import ReleasedReplica, save_released

    config = HubertConfig(hidden_size=1024, num_hidden_layers=48, num_attention_heads=16, intermediate_size=4096,
                          feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, num_labels=6)
    with torch.device("meta"):
        replica = ReleasedReplica(config)
    rng = np.random.default_rng(seed)
    replica = replica.to_empty(device="cpu")
    with torch.no_grad():
        for p in replica.parameters():
            p.copy_(torch.from_numpy((0.02 * rng.standard_normal(p.shape, np.float32))))
    save_released(replica, out, safe=safetensors)
    return sum(p.numel() for p in replica.parameters())


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of a child process."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20


def main() -> int:
    """Write the checkpoint, convert it, export it back; one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/exhubert-full")
    ap.add_argument("--safetensors", action="store_true", help="model.safetensors instead of pytorch_model.bin")
    args = ap.parse_args()
    work = Path(args.workdir)
    n = write_released(work / "released", args.safetensors)
    weights = next(p for p in (work / "released").iterdir() if p.name != "config.json")
    wall_in, rss_in = timed([sys.executable, "-m", "converters.torch_to_flax", str(work / "released"),
                             str(work / "jax")])
    wall_out, rss_out = timed([sys.executable, "-m", "converters.flax_to_torch", str(work / "jax"),
                               str(work / "back"), "--layout", "released"])
    print(json.dumps({"params": n, "weights_file": weights.name, "weights_gb": round(weights.stat().st_size / 1e9, 2),
                      "import_s": round(wall_in, 1), "export_s": round(wall_out, 1),
                      "peak_rss_gib_max_child": round(max(rss_in, rss_out), 2),
                      "load_avg": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
