"""How one training step turns batches into an update: one per round over every corpus (the paper, section 4.1), or
one per corpus batch. The trainer asks a rule how many batches a step takes and what its step is called."""

from __future__ import annotations

from typing import Any

import optax
from jax.sharding import Mesh

from exhubert_jax.training.step import LossOptions, RoundStep, TrainState, make_train_step


class RoundUpdate:
    """One update per round: one batch from every corpus, their gradients averaged, each corpus weighing the same
    (or as much as the `corpus_weight` its batches carry: --corpus-weights)."""

    unit = "round"

    def __init__(self, model: Any, tx: optax.GradientTransformation, labels: Any, n_corpora: int, *,
                 mesh: Mesh | None = None, loss: LossOptions | None = None, augment: Any = None):
        self.batches_per_step = n_corpora
        self.round = RoundStep(model, tx, labels, mesh=mesh, loss=loss, augment=augment)
        self.compiles = self.round.counter
        self.sums = None  # the gradient sums, zeroed by each update and reused by the next round

    def __call__(self, state: TrainState, batches: list[dict]) -> tuple[TrainState, dict]:
        """(state after the round's update, metrics with the per-corpus 'losses' in batch order)."""
        state, self.sums, metrics = self.round(state, batches, self.sums)
        return state, metrics


class PerCorpusUpdate:
    """One update per corpus batch, the corpora taking turns."""

    unit = "step"
    batches_per_step = 1

    def __init__(self, model: Any, tx: optax.GradientTransformation, labels: Any, n_corpora: int, *,
                 mesh: Mesh | None = None, loss: LossOptions | None = None, augment: Any = None):
        self.step, self.compiles = make_train_step(model, tx, labels, mesh=mesh, loss=loss, augment=augment)
        self.banks = augment.banks if augment is not None else None  # the step's argument (training.augmentation)

    def __call__(self, state: TrainState, batches: list[dict]) -> tuple[TrainState, dict]:
        """(state after the batch's update, metrics with 'losses', the one corpus's loss)."""
        state, metrics = self.step(state, batches[0], self.banks)
        return state, dict(metrics, losses=[metrics["loss"]])


UPDATE_RULES = {"round": RoundUpdate, "per-corpus": PerCorpusUpdate}
UPDATES = tuple(UPDATE_RULES)
