"""Trainable/frozen labels from path rules, the paper's AdamW via optax.multi_transform, and param partitioning."""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import optax

from .config import HubertConfig
from .errors import ExhubertError
from .expansion_spec import FREEZE_MODES, trainable_subtrees

TRAINABLE, FROZEN = "trainable", "frozen"
# What follows the warm-up, by --schedule name: (peak lr, updates after the warm-up) -> optax schedule. A new entry
# here is a new --schedule choice (train.py's choices and validation read this mapping).
SCHEDULES: dict[str, Callable[[float, int], optax.Schedule]] = {
    "constant": lambda lr, n: optax.constant_schedule(lr),  # the paper's
    "linear": lambda lr, n: optax.linear_schedule(lr, 0.0, n),  # to 0 at the last update
    "cosine": lambda lr, n: optax.cosine_decay_schedule(lr, n),  # to 0 at the last update
}


class LabelError(ExhubertError, ValueError):
    """A parameter that no freezing rule covers, or optimiser settings that cannot work."""


def freezing_rules(config: HubertConfig, freeze: str = "original") -> list[tuple[str, str]]:
    """(regex, label) rules over '/'-joined parameter paths; the first match wins and every path must match one."""
    if freeze not in FREEZE_MODES:
        raise LabelError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    expansion = [(rf"^{'/'.join(path)}/", TRAINABLE if trains else FROZEN)
                 for path, trains in trainable_subtrees(config.expansion_copies, freeze).items()]
    return [
        (r"^hubert/feature_extractor/", FROZEN),  # the CNN is frozen for the entire training (paper, section 4.1)
        *expansion,
        (r"^hubert/encoder/(pos_conv_embed|layer_norm)/", TRAINABLE),
        (r"^hubert/feature_projection/", TRAINABLE),
        (r"^hubert/masked_spec_embed$", TRAINABLE),
        (r"^(projector|classifier|regressor)/", TRAINABLE),
        (r"^layer_weights$", TRAINABLE),
    ]


def path_str(path: tuple) -> str:
    """'a/b/c' for a jax key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def labels_from_rules(params: Any, rules: list[tuple[str, str]]) -> Any:
    """Label every leaf by the first matching rule; an uncovered leaf is an error naming it."""
    compiled = [(re.compile(p), label) for p, label in rules]

    def label(path, _):
        name = path_str(path)
        for pattern, lab in compiled:
            if pattern.search(name):
                return lab
        raise LabelError(f"parameter {name} is covered by no freezing rule")

    return jax.tree_util.tree_map_with_path(label, params)


def param_labels(params: Any, config: HubertConfig, freeze: str = "original") -> Any:
    """'trainable'/'frozen' for every parameter of a (plain or expanded) model."""
    return labels_from_rules(params, freezing_rules(config, freeze))


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


def split_params(params: Any, labels: Any) -> tuple[Any, Any]:
    """(trainable, frozen) trees; each holds None where the other holds the leaf."""
    trainable = jax.tree.map(lambda p, lab: p if lab == TRAINABLE else None, params, labels)
    frozen = jax.tree.map(lambda p, lab: p if lab == FROZEN else None, params, labels)
    return trainable, frozen


def merge_params(trainable: Any, frozen: Any) -> Any:
    """Inverse of split_params."""
    return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen, is_leaf=lambda x: x is None)


def count(tree: Any, labels: Any | None = None, which: str = TRAINABLE) -> int:
    """Number of scalars in a (shape) tree, optionally only those labelled `which`."""
    sizes = jax.tree.map(lambda x: int(x.size) if hasattr(x, "size") else 0, tree)
    if labels is None:
        return sum(jax.tree.leaves(sizes))
    return sum(s for s, lab in zip(jax.tree.leaves(sizes), jax.tree.leaves(labels)) if lab == which)


def full_gradients(trainable_grads: Any, frozen: Any) -> Any:
    """Gradients for the whole tree from gradients of the trainable part (zeros, eliminated by XLA, elsewhere)."""
    return merge_params(trainable_grads, jax.tree.map(lambda p: jax.numpy.zeros_like(p), frozen))


def state_size(tx: optax.GradientTransformation, params: Any) -> int:
    """Scalars held by tx's state for `params`, from shapes alone (frozen leaves hold none under multi_transform)."""
    shapes = jax.eval_shape(tx.init, params)
    return sum(int(x.size) for x in jax.tree.leaves(shapes) if hasattr(x, "size"))
