"""Toy sources, tiny models and short-run options shared by the training tests."""

from __future__ import annotations

import jax
import numpy as np

from exhubert_jax import HubertForSequenceClassification, init_params, preset
from exhubert_jax.model.param_labels import param_labels
from exhubert_jax.training.loop import TrainOptions

NO_DROPOUT = dict(hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, final_dropout=0.0, layerdrop=0.0)


class ToySource:
    """In-memory source: class-dependent tones of varying length (what batching needs: len, [i])."""

    def __init__(self, n: int, seed: int, min_len: int = 2000, max_len: int = 6000, nan: bool = False):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            label = i % 6
            t = np.arange(rng.integers(min_len, max_len)) / 16000
            audio = np.sin(2 * np.pi * (150 + 120 * label) * t) + 0.1 * rng.standard_normal(t.size)
            if nan:
                audio[:] = np.nan
            self.items.append(dict(audio=audio.astype(np.float32), label=label, native_index=label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def tiny(**overrides):
    """A tiny model with SpecAugment + dropout on (so the rng path is exercised), and its params and labels."""
    config = preset("tiny", **overrides)
    model = HubertForSequenceClassification(config)
    params = init_params(config, 0)
    return model, params, param_labels(params, config)


def sources(n=24, nan=False):
    """Two toy corpora for training and validation."""
    return ({"toy-a": ToySource(n, 0, nan=nan), "toy-b": ToySource(n, 1, nan=nan)},
            {"toy-a": ToySource(12, 2), "toy-b": ToySource(12, 3)})


def opts(**kw):
    """Short-run TrainOptions."""
    base = dict(steps=8, batch_size=4, max_seconds=0.25, lr=1e-3, eval_every=4, quiet=True)
    return TrainOptions(**{**base, **kw})


def leaves_equal(a, b) -> bool:
    """Bitwise equality of two pytrees."""
    la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))
