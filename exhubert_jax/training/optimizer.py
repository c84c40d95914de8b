"""The paper's AdamW via optax.multi_transform (frozen leaves hold no state), learning-rate schedules, and the
gradients of a partitioned tree."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from exhubert_jax.model.param_labels import FROZEN, TRAINABLE, LabelError, merge_params

# What follows the warm-up, by --schedule name: (peak lr, updates after the warm-up) -> optax schedule. A new entry
# here is a new --schedule choice (train.py's choices and validation read this mapping).
SCHEDULES: dict[str, Callable[[float, int], optax.Schedule]] = {
    "constant": lambda lr, n: optax.constant_schedule(lr),  # the paper's
    "linear": lambda lr, n: optax.linear_schedule(lr, 0.0, n),  # to 0 at the last update
    "cosine": lambda lr, n: optax.cosine_decay_schedule(lr, n),  # to 0 at the last update
}


def make_schedule(kind: str, lr: float, steps: int, warmup_steps: int = 0) -> float | optax.Schedule:
    """Learning rate per optimizer update: an optional linear warm-up from 0 over warmup_steps, then SCHEDULES[kind]
    over the remaining updates. A plain float when nothing varies (constant without warm-up)."""
    if kind not in SCHEDULES:
        raise LabelError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if not 0 <= warmup_steps < max(steps, 1):
        raise LabelError(f"--warmup-steps must be in 0..{steps - 1} (fewer than --steps), got {warmup_steps}")
    if kind == "constant" and warmup_steps == 0:
        return lr
    after = SCHEDULES[kind](lr, steps - warmup_steps)
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), after], [warmup_steps])


def make_optimizer(labels: Any, learning_rate: float | Callable = 1e-5, *, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, weight_decay: float = 0.01, clip_norm: float | None = None,
                   accumulate: int = 1) -> optax.GradientTransformation:
    """The paper's AdamW on trainable leaves, set_to_zero on frozen ones (no optimiser state for them)."""
    chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    chain.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    tx = optax.multi_transform({TRAINABLE: optax.chain(*chain), FROZEN: optax.set_to_zero()}, labels)
    return optax.MultiSteps(tx, accumulate) if accumulate > 1 else tx


def full_gradients(trainable_grads: Any, frozen: Any) -> Any:
    """Gradients for the whole tree from gradients of the trainable part (zeros, eliminated by XLA, elsewhere)."""
    return merge_params(trainable_grads, jax.tree.map(lambda p: jax.numpy.zeros_like(p), frozen))


def state_size(tx: optax.GradientTransformation, params: Any) -> int:
    """Scalars held by tx's state for `params`, from shapes alone (frozen leaves hold none under multi_transform)."""
    shapes = jax.eval_shape(tx.init, params)
    return sum(int(x.size) for x in jax.tree.leaves(shapes) if hasattr(x, "size"))
