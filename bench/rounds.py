"""Cost of one round (one batch per corpus, gradients averaged, one update) against the same batches as per-corpus
steps (one update each), on the demo model and batch shape. One process, interleaved repeats; one JSON line.

Usage: python bench/rounds.py [--corpora 3] [--batch 8] [--seconds 1.0] [--preset tiny] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import audio_batch, machine, stats, time_calls  # noqa: E402
from exhubert_jax import HubertForSequenceClassification, init_params, preset  # noqa: E402
from exhubert_jax.data.audio import SAMPLE_RATE  # noqa: E402
from exhubert_jax.data.loading.devices import to_device  # noqa: E402
from exhubert_jax.model.param_labels import param_labels  # noqa: E402
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.stages import DEMO_OVERRIDES  # noqa: E402
from exhubert_jax.training.step import RoundStep, create_state, make_train_step  # noqa: E402


def main(argv=None) -> dict:
    """Time both update rules on the same device batches; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    ap.add_argument("--corpora", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)

    config = preset(args.preset, **(DEMO_OVERRIDES if args.preset == "tiny" else {}))
    model = HubertForSequenceClassification(config)
    params = init_params(config, 0)
    labels = param_labels(params, config)
    tx = make_optimizer(labels, 1e-4)
    rng = np.random.default_rng(0)
    batches = [to_device(dict(input_values=audio_batch(args.batch, args.seconds, seed=i),
                              attention_mask=np.ones((args.batch, int(args.seconds * SAMPLE_RATE)), np.int32),
                              targets=rng.integers(0, 6, args.batch).astype(np.int32),
                              weights=np.ones(args.batch, np.float32)), None) for i in range(args.corpora)]

    round_step = RoundStep(model, tx, labels)
    step, step_compiles = make_train_step(model, tx, labels)
    holder = {"round": create_state(params, tx, 0), "sums": None, "per": create_state(params, tx, 0)}

    def one_round():
        holder["round"], holder["sums"], m = round_step(holder["round"], batches, holder["sums"])
        m["loss"].block_until_ready()

    def per_corpus():
        for b in batches:
            holder["per"], m = step(holder["per"], b)
        m["loss"].block_until_ready()

    one_round(), per_corpus()  # compile both
    rounds, pers = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        rounds += time_calls(one_round, 1, warmup=0)
        pers += time_calls(per_corpus, 1, warmup=0)
    r, p = stats(rounds), stats(pers)
    result = {"bench": "rounds", "preset": args.preset, "corpora": args.corpora, "batch": args.batch,
              "seconds": args.seconds, "round": r, "per_corpus_steps": p, "ratio_round_over_per_corpus":
              r["median_s"] / p["median_s"], "compiles": {"round_add": round_step.counter.count,
                                                            "per_corpus_step": step_compiles.count},
              "loadavg": os.getloadavg(), **machine()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
