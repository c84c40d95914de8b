"""Robustness under controlled degradation (evaluate.py --degrade): one checkpoint scored on one prepared split under
every condition (clean first), each with every registered metric and its bootstrap intervals, and a paired test
against clean on the same utterances and the same resamples (Holm over the conditions of a corpus).

The split is read and batched once; each condition runs over the same batches. Host conditions (codecs, telephone)
degrade batches in a pool of worker threads ahead of the device, which meanwhile runs the batches before them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from exhubert_jax.data import codecs
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.loading.batching import DEFAULT_MAX_SECONDS, eval_batches
from exhubert_jax.evaluation import paired_tests as paired
from exhubert_jax.evaluation import statistics as analysis
from exhubert_jax.evaluation.degradation import Condition, DegradedPredictor, condition_key
from exhubert_jax.evaluation.metrics import METRICS
from exhubert_jax.evaluation.predict import SplitPredictions, collected
from exhubert_jax.evaluation.scoring import check_label_space, score_predictions

NOISE_SEGMENT_SECONDS = 10.0  # --noise-dir recordings are cut into segments this long (a longer utterance wraps)


def host_workers() -> int:
    """Worker threads for the host conditions: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def host_pool(needed: bool, workers: int | None = None) -> Iterator[concurrent.futures.Executor | None]:
    """A pool of worker threads (libsndfile and soxr release the GIL: bench/degrade.py measures threads against
    processes), or None when no condition runs on the host. A split of one batch, which has nothing to overlap with
    the device, is degraded in the calling thread."""
    if not needed:
        yield None
        return
    with concurrent.futures.ThreadPoolExecutor(workers or host_workers(), thread_name_prefix="degrade") as pool:
        yield pool


def load_banks(noise_dir: str | None, rir_dir: str | None, seed: int) -> dict[str, jax.Array]:
    """The device arrays of --noise-dir (segments of NOISE_SEGMENT_SECONDS) and --rir-dir, by bank name."""
    from exhubert_jax.data import banks as bank_files

    arrays = {}
    if noise_dir is not None:
        arrays["noise"] = bank_files.noise_bank(noise_dir, round(NOISE_SEGMENT_SECONDS * SAMPLE_RATE), seed)
    if rir_dir is not None:
        arrays["rir"] = bank_files.rir_bank(rir_dir, seed)
    return {k: jax.device_put(v) for k, v in arrays.items()}


def condition_predictions(predictor: DegradedPredictor, params: Any, batches: Sequence, condition: Condition,
                          key: np.ndarray, bank: jax.Array | None, pool: concurrent.futures.Executor | None,
                          label_space: str) -> SplitPredictions:
    """The split's predictions under one condition, over the prepared batches (eval_batches, read once)."""
    from exhubert_jax.data.loading.devices import batch_arrays

    width = max(b.input_values.shape[1] for b in batches)
    lengths = [np.asarray(b.attention_mask).sum(axis=1) for b in batches]
    if condition.host and pool is not None and len(batches) > 1:  # all submitted: the pool works ahead
        inputs = pool.map(codecs.degrade_rows, [b.input_values for b in batches], lengths,
                          [condition.kind] * len(batches), [condition.options] * len(batches))
    elif condition.host:
        inputs = (codecs.degrade_rows(b.input_values, n, condition.kind, condition.options)
                  for b, n in zip(batches, lengths))
    else:
        inputs = (b.input_values for b in batches)
    parts = []
    for batch, x in zip(batches, inputs):
        arrays = dict(batch_arrays(batch, label_space), indices=np.asarray(batch.indices),
                      dims=np.asarray(batch.dims, np.float32))
        out = predictor.degraded_outputs(params, x, arrays["attention_mask"], batch.indices, condition, key, bank,
                                         width)
        parts.append((arrays, out, float(batch.n_seconds)))
    return collected(parts, predictor.model.config)


def paired_rows(results: Sequence[dict], n_resamples: int, seed: int) -> list[dict]:
    """Each condition's paired test against clean (results[0]) on the same utterances and resamples
    (paired_tests.compare_metrics); Holm over the degraded conditions; clean's row is its test against itself
    (difference 0, p 1)."""
    clean, rows = results[0], []
    for r in results:
        paired.check_same_test_set(r["corpus"], clean, r, "clean", r["condition"])
        y, preds, speakers = paired.aligned(clean, r)
        row, _ = paired.compare_metrics(y, preds, len(r["class_names"]), speakers, n_resamples, seed,
                                        name=r["corpus"])
        rows.append({"condition": r["condition"], **row})
    paired.add_holm(rows[1:])
    for e in (rows[0], *rows[0]["metrics"].values()):
        e.update(p_holm=e["p"], significant=False)
    return rows


def score_conditions(model: Any, params: Any, prepared: Any, split: str, conditions: Sequence[Condition], *,
                     batch_size: int, label_space: str, predictor: DegradedPredictor, seed: int, n_resamples: int,
                     banks: dict[str, jax.Array] | None = None, pool: concurrent.futures.Executor | None = None,
                     say: Any = None) -> list[dict]:
    """evaluate_corpus's result under each condition (clean first), each with 'condition', 'kind', 'options',
    'strength', its 'intervals' and, with resamples, 'paired' (its test against clean)."""
    from exhubert_jax.evaluation.degradation import BANKS

    check_label_space(model.config, label_space, list(prepared.native_labels), prepared.name)
    batches = list(eval_batches(prepared.split(split), batch_size, max_seconds=DEFAULT_MAX_SECONDS,
                                corpus=prepared.name))
    results = []
    for condition in conditions:
        if say is not None:
            say(f"evaluating {prepared.name} ({split}) under {condition.spec}...")
        p = condition_predictions(predictor, params, batches, condition, condition_key(seed, prepared.name, condition),
                                  (banks or {}).get(BANKS.get(condition.kind, "")), pool, label_space)
        r = score_predictions(model, prepared, split, label_space, "masked", p)
        r.update(condition=condition.spec, kind=condition.kind, options=condition.options,
                 strength=condition.strength)
        analysis.add_metric_intervals(r, n_resamples, seed)
        results.append(r)
    if n_resamples > 0 and results[0]["utterances"]:
        for r, row in zip(results, paired_rows(results, n_resamples, seed)):
            r["paired"] = row
    return results


def summary(r: dict) -> dict:
    """A condition's JSON entry: spec, kind, options, strength, n, every registered metric, intervals, paired."""
    return {"condition": r["condition"], "kind": r["kind"], "options": r["options"], "strength": r["strength"],
            "n": r["n"], **{k: r.get(k) for k in METRICS}, "intervals": r.get("intervals"),
            "paired": r.get("paired")}
