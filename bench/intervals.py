"""Time the bootstrap intervals and the paired test on a large simulated test set (default: 10,000 utterances of 30
speakers, 6 classes, 1000 resamples) against a per-resample loop over utterance indices; prints one JSON line.

    python bench/intervals.py --utterances 10000 --speakers 30 --resamples 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import stats, time_calls  # noqa: E402
from exhubert_jax.evaluation import bootstrap as bs, metrics, paired_tests as paired  # noqa: E402

K = 6


def test_set(n: int, n_speakers: int, seed: int = 0):
    """Labels, two runs' predictions (about 60 % and 62 % right) and speaker ids."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    preds = np.vstack([np.where(rng.random(n) < r, y, (y + rng.integers(1, K, n)) % K) for r in (0.6, 0.62)])
    return y, preds, [f"s{i}" for i in rng.integers(0, n_speakers, n)]


def loop_reference(y, pred, resamples: int, seed: int = 0) -> np.ndarray:
    """UAR of resampled utterance indices, one resample at a time (what the vectorised version replaces)."""
    rng = np.random.default_rng(seed)
    return np.array([metrics.uar(y[i], pred[i], K) for i in (rng.integers(0, len(y), len(y)) for _ in range(resamples))])


def main(argv=None) -> None:
    """Parse options, time each variant, print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=10000)
    p.add_argument("--speakers", type=int, default=30)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    y, preds, speakers = test_set(args.utterances, args.speakers)
    b = args.resamples
    variants = {
        "cluster_intervals": lambda: bs.intervals(y, preds[0], K, speakers, b, 0),
        "utterance_intervals": lambda: bs.intervals(y, preds[0], K, None, b, 0),
        "cluster_paired_test": lambda: paired.compare(y, preds, K, speakers, b, 0),
        "utterance_paired_test": lambda: paired.compare(y, preds, K, None, b, 0),
    }
    out = {name: stats(time_calls(fn, args.repeats)) for name, fn in variants.items()}
    out["loop_reference_uar_only"] = stats(time_calls(lambda: loop_reference(y, preds[0], b), 1, warmup=0))
    print(json.dumps({"utterances": args.utterances, "speakers": args.speakers, "resamples": b, **out,
                      "load_avg": [round(v, 2) for v in os.getloadavg()]}))


if __name__ == "__main__":
    main()
