"""Cost of evaluate.py --degrade: the clean evaluation of a prepared split against each condition (predictions of
every utterance, after a warm-up that compiles), calls interleaved, on a model and the synthetic demo corpora; and
the host conditions' work alone (degrade_rows over the split's batches, median seconds) serially, in 2 threads and
in 2 spawned processes, which says whether libsndfile releases the GIL. One process; one JSON document.

Usage: python bench/degrade.py [--preset tiny] [--per-class 8] [--batch 8] [--repeats 5]
           [--degrade noise:snr=5 --degrade reverb:rt60=0.8 ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from bench.common import stats, time_calls, time_interleaved
from exhubert_jax import HubertForSequenceClassification, init_params, preset
from exhubert_jax.data import codecs
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.loading.batching import eval_batches
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.evaluation import robustness
from exhubert_jax.evaluation.degradation import DegradedPredictor, condition_key, conditions

DEFAULT = ("noise:snr=5", "noise:snr=5,colour=pink", "reverb:rt60=0.8", "clip:db=-20", "telephone",
           "codec:name=mp3", "codec:name=opus", "codec:name=vorbis", "codec:name=gsm")


def host_work(batches, lengths, condition, pool) -> None:
    """degrade_rows of every batch under a host condition, in the pool (None: serially)."""
    args = ([b.input_values for b in batches], lengths, [condition.kind] * len(batches),
            [condition.options] * len(batches))
    list(pool.map(codecs.degrade_rows, *args) if pool else map(codecs.degrade_rows, *args))


def main(argv=None) -> dict:
    """Time every condition and the host pools; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--per-class", type=int, default=8, help="demo utterances per class and corpus")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--degrade", action="append")
    args = ap.parse_args(argv)
    wanted = conditions(args.degrade or DEFAULT)
    config = preset(args.preset)
    model, params = HubertForSequenceClassification(config), init_params(config, 0)
    with tempfile.TemporaryDirectory() as root:
        prepare_demo(root, seed=0, n_per_class=args.per_class, n_speakers=4, log=lambda m: None)
        prepared = open_prepared("demo-a", root)
        batches = list(eval_batches(prepared.split("test"), args.batch, corpus=prepared.name))
        lengths = [b.attention_mask.sum(axis=1) for b in batches]
        predictor = DegradedPredictor(model)
        host = [c for c in wanted if c.host]
        spawn = multiprocessing.get_context("spawn")
        with robustness.host_pool(True) as pool:

            def run(condition):
                """One pass over the split under a condition."""
                return lambda: robustness.condition_predictions(
                    predictor, params, batches, condition, condition_key(0, prepared.name, condition), None,
                    pool, "emotion")

            times = time_interleaved({c.spec: run(c) for c in wanted}, args.repeats)
        pools = {}
        with concurrent.futures.ThreadPoolExecutor(2) as threads, \
                concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as processes:
            for c in host:
                pools[c.spec] = {name: stats(time_calls(lambda p=pool, c=c: host_work(batches, lengths, c, p),
                                                        args.repeats))["median_s"]
                                 for name, pool in (("serial", None), ("2 threads", threads),
                                                    ("2 processes", processes))}
    clean = stats(times["clean"])["median_s"]
    result = {"device": str(jax.devices()[0]), "cores": os.cpu_count(), "preset": args.preset,
              "utterances": int(sum(len(n) for n in lengths)), "batches": len(batches),
              "audio_s": float(sum(n.sum() for n in lengths) / 16000), "host_workers": robustness.host_workers(),
              "conditions": {spec: {**stats(t), "vs_clean": stats(t)["median_s"] / clean} for spec, t in times.items()},
              "host_work_median_s": pools,
              "compiled": sorted({f"{k} {s}" for k, s in predictor.compiled}), "numpy": np.__version__}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
