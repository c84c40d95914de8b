"""Train state and the jitted steps: trainable-only gradients, NaN guard, data parallelism over a mesh.

Two update rules share the same loss and update code:
- a *round* (the paper, section 4.1: "passing each dataset forward and backward through the model with one batch in
  each step"): gradients of one batch per corpus, averaged with equal weights (or --corpus-weights'), then one AdamW
  update;
- *per-corpus*: one AdamW update per corpus batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from exhubert_jax.data.loading.devices import replicated
from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation.dimensional import LOSSES, dimensional_loss
from exhubert_jax.model.layers import at_least_f32
from exhubert_jax.model.param_labels import merge_params, split_params
from exhubert_jax.process.options import option
from exhubert_jax.training.imbalance import CLASS_WEIGHTS_CHECK, parse_class_weights
from exhubert_jax.training.optimizer import full_gradients


class TrainError(ExhubertError, RuntimeError):
    """A training run that cannot go on (bad options, too many non-finite steps)."""


# ----------------------------------------------------------------------------------------------------- state & mesh


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training: step (updates made), params, optimizer state, rng, skipped count."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    skipped: jax.Array

    def as_dict(self) -> dict:
        """Plain dict (what is checkpointed)."""
        return dict(step=self.step, params=self.params, opt_state=self.opt_state, rng=self.rng, skipped=self.skipped)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainState":
        """Inverse of as_dict."""
        return cls(**{k: d[k] for k in ("step", "params", "opt_state", "rng", "skipped")})


def create_state(params: Any, tx: optax.GradientTransformation, seed: int, mesh: Mesh | None = None) -> TrainState:
    """A fresh TrainState (params copied as float32, or float64 when given so; replicated over the mesh if given)."""
    params = jax.tree.map(lambda p: jnp.array(p, dtype=jnp.promote_types(p.dtype, jnp.float32)), params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.PRNGKey(seed), skipped=jnp.zeros((), jnp.int32))
    return jax.device_put(state, replicated(mesh)) if mesh is not None else state


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
    """The global batch must split evenly over the data axis."""
    n = mesh.size if mesh is not None else 1
    if batch_size % n:
        raise TrainError(f"--batch-size {batch_size} is not divisible by the {n} devices of the data mesh; "
                         f"use a multiple of {n}")


# ------------------------------------------------------------------------------------------------------- the steps


class CompileCounter:
    """Counts traces of a jitted function (one per compilation) and the input shapes that caused them."""

    def __init__(self, name: str):
        self.name, self.count, self.shapes = name, 0, []

    def hit(self, shape: tuple) -> None:
        """Called from inside the traced function."""
        self.count += 1
        self.shapes.append(tuple(shape))


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    """Softmax cross-entropy in float32 (or wider), averaged with per-row weights (0 = padding row): sum of w_i x
    ce_i over sum of w_i, torch.nn.CrossEntropyLoss(weight=...)'s mean when w_i is the weight of row i's class; 0 for
    a batch of padding rows only."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(at_least_f32(logits.dtype)), targets)
    return weighted_mean(ce, weights)


def weighted_mean(ce: jax.Array, weights: jax.Array) -> jax.Array:
    """Sum of w_i x ce_i over sum of w_i; 0 for a batch of padding rows only (all weights 0)."""
    total = jnp.sum(weights)
    return jnp.sum(ce * weights) / jnp.where(total > 0, total, 1.0)


def soft_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    """Softmax cross-entropy against probability targets (B, C), -sum_c p_c log softmax(z)_c per row
    (torch.nn.functional.cross_entropy with probability targets), in float32 (or wider), averaged with per-row
    weights as weighted_cross_entropy."""
    dtype = at_least_f32(logits.dtype)
    return weighted_mean(optax.softmax_cross_entropy(logits.astype(dtype), targets.astype(dtype)), weights)


# train.py's stages that train (training.options declares the stage names).
TRAINING_STAGES = ("finetune", "transfer")
# What the cross-entropy is against: each example's label, or its annotators' label distribution (soft labels).
TARGETS = ("hard", "soft")


@dataclasses.dataclass
class LossOptions:
    """The options the loss of a batch reads, declared once; TrainOptions inherits them, so a new one is a field
    here (its flag, check, run.json key and resume rule follow) plus the line of batch_loss that uses it."""

    dim_loss: str = option("ccc", choices=LOSSES, stages=TRAINING_STAGES,
                           help="dimensional loss: 1 - CCC averaged over the dimensions (default), or MSE")
    targets: str = option("hard", choices=TARGETS, stages=TRAINING_STAGES,
                          help="cross-entropy against each example's label (hard, default) or its annotators' label "
                               "distribution (soft; one-hot where it has none): see docs/training.md, Soft labels")
    class_weights: str | dict = option(
        "none", stages=TRAINING_STAGES, parse=parse_class_weights, check=CLASS_WEIGHTS_CHECK,
        metavar="none|balanced|FILE",
        help="weights of each corpus's classes in the cross-entropy: none (default), balanced (n_samples / (n_classes "
             "x count) from its training split), or a CSV file of corpus,class,weight rows (1 for classes left out)")


def batch_loss(out: Any, batch: dict, config: Any, loss: LossOptions | None = None) -> jax.Array:
    """task_weights[0] x cross-entropy (models with classes) + task_weights[1] x the dimensional loss (models with
    dimensions; rows and dimensions without a target are masked out). The weights are arrays, so any mix of tasks
    runs in the one compiled step."""
    options = loss or LossOptions()
    weights = batch["task_weights"][0] if "task_weights" in batch else jnp.ones(2, jnp.float32)  # rows are equal
    total = jnp.zeros((), at_least_f32(out.logits.dtype))
    if config.num_labels:
        rows = batch["weights"]
        if options.class_weights != "none":  # each row's class weight in its corpus (data: one step for all corpora)
            rows = rows * batch["class_weights"]
        if options.targets == "soft":  # against the label distributions (data.loading.devices.soft_targets)
            total = total + weights[0] * soft_cross_entropy(out.logits, batch["soft_targets"], rows)
        else:
            total = total + weights[0] * weighted_cross_entropy(out.logits, batch["targets"], rows)
    if config.dimensions:
        mask = batch["dims_mask"] * batch["weights"][:, None]
        total = total + weights[1] * dimensional_loss(out.values, batch["dims"], mask, options.dim_loss)
    return total


# The augmentation's key is fold_in(step key, AUGMENT_STREAM), made only when augmentation is on: the dropout key
# stays the step key, so the default step is unchanged bit for bit.
AUGMENT_STREAM = 0x61756720


def _loss_and_grads(model: Any, labels: Any, params: Any, batch: dict, key: jax.Array,
                    loss: LossOptions | None = None, augment: Any = None, banks: Any = None):
    """(loss, gradients of the trainable leaves) of one batch; frozen leaves get no weight gradient. `augment`
    (training.augmentation.Augmentation) changes the batch's waveforms and mask first, reading `banks`."""
    trainable, frozen = split_params(params, labels)
    inputs, mask = batch["input_values"], batch["attention_mask"]
    if augment is not None:
        inputs, mask = augment.apply(banks, inputs, mask, jax.random.fold_in(key, AUGMENT_STREAM))

    def loss_fn(trainable):
        out = model.apply({"params": merge_params(trainable, frozen)}, inputs, mask, deterministic=False,
                          rngs={"dropout": key})
        return batch_loss(out, batch, model.config, loss)

    return jax.value_and_grad(loss_fn)(trainable)


def _guarded_update(tx: optax.GradientTransformation, labels: Any, state: TrainState, loss: jax.Array,
                    grads: Any) -> tuple[TrainState, dict]:
    """One optimizer update from trainable gradients; a non-finite loss or gradient leaves params and moments as they
    were and counts a skipped step."""
    grad_norm = optax.global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(operands):
        """The AdamW step on trainable leaves."""
        params, opt_state = operands
        trainable, frozen = split_params(params, labels)
        updates, opt_state = tx.update(full_gradients(grads, frozen), opt_state, params)
        trainable_new = optax.apply_updates(trainable, split_params(updates, labels)[0])
        return merge_params(trainable_new, frozen), opt_state

    # lax.cond, not a tree-wide select: a skipped step costs no extra pass over the parameters
    params, opt_state = jax.lax.cond(ok, update, lambda operands: operands, (state.params, state.opt_state))
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                        skipped=state.skipped + jnp.where(ok, 0, 1).astype(jnp.int32))
    return new, dict(loss=loss, grad_norm=grad_norm, ok=ok)


def _jit_kwargs(mesh: Mesh | None) -> dict:
    """Outputs replicated over the mesh (params, moments, gradients and metrics are never sharded)."""
    return dict(out_shardings=replicated(mesh)) if mesh is not None else {}


def make_train_step(model: Any, tx: optax.GradientTransformation, labels: Any, *, mesh: Mesh | None = None,
                    loss: LossOptions | None = None, augment: Any = None) -> tuple[Callable, CompileCounter]:
    """Per-corpus update: (step(state, batch, banks=None) -> (state, metrics), compile counter); state is donated;
    with `augment`, pass its banks (augment.banks) as `banks`."""
    counter = CompileCounter("train_step")

    def step(state: TrainState, batch: dict, banks: Any = None) -> tuple[TrainState, dict]:
        counter.hit(batch["input_values"].shape)  # Python side effect: runs once per compilation
        key = jax.random.fold_in(state.rng, state.step)
        value, grads = _loss_and_grads(model, labels, state.params, batch, key, loss, augment, banks)
        return _guarded_update(tx, labels, state, value, grads)

    return jax.jit(step, donate_argnums=0, **_jit_kwargs(mesh)), counter


@flax.struct.dataclass
class RoundSums:
    """Gradients and losses summed over the corpus batches of the current round, each times its corpus's weight, and
    those weights summed (the number of batches when every corpus weighs the same)."""

    grads: Any
    loss: jax.Array
    weight: jax.Array


class RoundStep:
    """One update per round: `add` (jitted once per batch shape) sums one corpus batch's loss and gradients into
    RoundSums; `update` (jitted once) averages them over the round's corpora, each corpus weighing the same (the
    paper), or by the weight its batch carries as `corpus_weight` (--corpus-weights: data, so the step is the same
    one), makes one AdamW update and returns zeroed sums. Both donate what they replace, so a round holds one
    gradient tree."""

    def __init__(self, model: Any, tx: optax.GradientTransformation, labels: Any, *, mesh: Mesh | None = None,
                 loss: LossOptions | None = None, augment: Any = None):
        self.model, self.tx, self.labels, self.loss, self.augment = model, tx, labels, loss, augment
        self.banks = augment.banks if augment is not None else None  # an argument of add, never a constant in it
        self.counter = CompileCounter("round_add")
        kw = _jit_kwargs(mesh)
        self.add = jax.jit(self._add, donate_argnums=0, **kw)
        self.update = jax.jit(self._update, donate_argnums=(0, 1), **kw)
        self.zeros = jax.jit(self._zeros, **kw)

    def _zeros(self, params: Any) -> RoundSums:
        trainable, _ = split_params(params, self.labels)
        loss_dtype = at_least_f32(jax.tree.leaves(trainable)[0].dtype)
        return RoundSums(grads=jax.tree.map(jnp.zeros_like, trainable), loss=jnp.zeros((), loss_dtype),
                         weight=jnp.zeros((), loss_dtype))

    def _add(self, sums: RoundSums, state: TrainState, index: jax.Array, batch: dict,
             banks: Any = None) -> tuple[RoundSums, jax.Array]:
        self.counter.hit(batch["input_values"].shape)
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), index)
        loss, grads = _loss_and_grads(self.model, self.labels, state.params, batch, key, self.loss, self.augment,
                                      banks)
        # the same on every real row (padding rows carry 0); 1 times a number is that number, so equal weights
        # leave the paper's sums as they were, bit for bit
        w = (jnp.max(batch["corpus_weight"]) if "corpus_weight" in batch else jnp.ones(())).astype(sums.loss.dtype)
        return RoundSums(grads=jax.tree.map(lambda s, g: s + w * g, sums.grads, grads), loss=sums.loss + w * loss,
                         weight=sums.weight + w), loss

    def _update(self, state: TrainState, sums: RoundSums) -> tuple[TrainState, RoundSums, dict]:
        n = sums.weight
        grads = jax.tree.map(lambda g: g / n, sums.grads)
        state, metrics = _guarded_update(self.tx, self.labels, state, sums.loss / n, grads)
        return state, jax.tree.map(jnp.zeros_like, sums), metrics

    def __call__(self, state: TrainState, batches: list[dict],
                 sums: RoundSums | None = None) -> tuple[TrainState, RoundSums, dict]:
        """One round over device batches (one per corpus): (state, zeroed sums for the next round, metrics with
        'losses', the per-corpus losses in batch order)."""
        sums = self.zeros(state.params) if sums is None else sums
        losses = []
        for i, batch in enumerate(batches):
            sums, loss = self.add(sums, state, jnp.int32(i), batch, self.banks)
            losses.append(loss)
        state, sums, metrics = self.update(state, sums)
        return state, sums, dict(metrics, losses=losses)
