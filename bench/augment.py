"""Cost of waveform augmentation inside the jitted training step: one HuBERT training step (forward, backward, AdamW;
CNN frozen, LayerDrop off) with and without `--augment noise --augment reverb --augment speed` (their defaults,
generated noise and impulse responses), on the same batch and the same donated state, calls alternating. One
process; one JSON line.

Usage: python bench/augment.py [--preset large] [--batch 2] [--seconds 3] [--repeats 5]
           [--augment noise --augment reverb --augment speed]
The script restarts itself with huge-page malloc (exhubert_jax.process.huge_pages); EXHUBERT_NO_HUGEPAGES=1 turns
it off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from bench.common import audio_batch, machine, peak_rss_mb, stats, time_interleaved
from exhubert_jax import HubertForSequenceClassification, init_params, preset
from exhubert_jax.model.param_labels import param_labels
from exhubert_jax.process.huge_pages import use_hugepage_malloc
from exhubert_jax.training.augmentation import Augmentation, augment, parse_all
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import create_state, make_train_step

DEFAULT_KINDS = ("noise", "reverb", "speed")


def main(argv=None) -> dict:
    """Time both steps on one batch and one state; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--preset", default="large")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--augment", action="append", help="augmentation specs (default: noise, reverb, speed)")
    args = ap.parse_args(argv)
    kinds = tuple(args.augment or DEFAULT_KINDS)

    config = preset(args.preset, layerdrop=0.0)  # a randomly skipped layer would make single steps noisy
    model = HubertForSequenceClassification(config)
    params = init_params(config, 0)
    labels = param_labels(params, config)
    tx = make_optimizer(labels, 1e-5)
    x = audio_batch(args.batch, args.seconds)
    batch = {"input_values": jnp.asarray(x), "attention_mask": jnp.ones(x.shape, jnp.int32),
             "targets": jnp.arange(args.batch, dtype=jnp.int32) % 6, "weights": jnp.ones(args.batch, jnp.float32)}
    plain, plain_counter = make_train_step(model, tx, labels)
    augmented, aug_counter = make_train_step(model, tx, labels, augment=Augmentation(parse_all(kinds), {}))
    holder = {"state": create_state(params, tx, seed=0)}  # one state, donated by whichever step runs
    del params

    def runner(step):
        """A no-argument call of `step` on the shared state, waited for."""
        def run():
            holder["state"], metrics = step(holder["state"], batch)
            jax.block_until_ready(metrics["loss"])
        return run

    first = {}
    for name, step in (("plain", plain), ("augmented", augmented)):
        start = time.perf_counter()
        runner(step)()
        first[name] = time.perf_counter() - start
    times = time_interleaved({"plain": runner(plain), "augmented": runner(augmented)}, args.repeats, warmup=0)
    alone = jax.jit(lambda a, m, k: augment(kinds, a, m, k))
    keys = iter(range(1 << 30))

    def run_alone():
        """The augmentation alone, jitted, on the batch (a new key each call)."""
        jax.block_until_ready(alone(batch["input_values"], batch["attention_mask"], jax.random.PRNGKey(next(keys))))

    run_alone()
    only = time_interleaved({"augmentation": run_alone}, max(args.repeats, 10), warmup=0)["augmentation"]
    result = {name: {**stats(t), "first_call_s": first[name]} for name, t in times.items()}
    out = {"bench": "augment", "preset": args.preset, "batch": args.batch, "seconds": args.seconds,
           "augment": list(kinds), **result, "augmentation_alone": stats(only),
           "ratio": result["augmented"]["median_s"] / result["plain"]["median_s"],
           "compiles": {"plain": plain_counter.count, "augmented": aug_counter.count},
           "peak_rss_mb": peak_rss_mb(), "machine": machine()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    use_hugepage_malloc()
    main()
