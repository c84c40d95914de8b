"""Heads: swap in a fresh classifier when the classes change (a corpus's native labels, say), or a fresh regressor
when the dimensions change; `heads_for_task` sets both for a training task."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.data.sources.dimensions import DIMENSIONS
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import EMOTION_CLASSES, HubertConfig
from exhubert_jax.model.layers import normal_init

TASKS = ("categorical", "dimensional", "both")


class TaskError(ExhubertError, ValueError):
    """A training task or task weighting that cannot be honoured."""


def _fresh_dense(config: HubertConfig, size: int, seed: int) -> Any:
    """A normally initialised Linear classifier_proj_size -> size, on the host."""
    dense = nn.Dense(size, kernel_init=normal_init)
    return jax.device_get(dense.init(jax.random.PRNGKey(seed), jnp.zeros((1, config.classifier_proj_size)))["params"])


def with_head(params: Any, config: HubertConfig, num_labels: int, label_names: tuple[str, ...] | None,
              seed: int = 0) -> tuple[Any, HubertConfig]:
    """(params, config) with a fresh classifier when the number or names of classes differ; projector is kept.
    num_labels 0 removes the classifier (a dimensional-only model).

    A head of the right size without names (e.g. a converted checkpoint's LABEL_i) is kept and named.
    """
    label_names = tuple(label_names) if label_names is not None else None
    if config.num_labels == num_labels and config.label_names in (None, label_names):
        return params, (config if config.label_names == label_names else config.replace(label_names=label_names))
    rest = {k: v for k, v in params.items() if k != "classifier"}
    head = {"classifier": _fresh_dense(config, num_labels, seed)} if num_labels else {}
    return {**rest, **head}, config.replace(num_labels=num_labels, label_names=label_names)


def with_dimensions(params: Any, config: HubertConfig, dimensions: tuple[str, ...],
                    seed: int = 0) -> tuple[Any, HubertConfig]:
    """(params, config) with a fresh regressor (Linear classifier_proj_size -> len(dimensions)) when the dimensions
    differ, none for ()."""
    dimensions = tuple(dimensions)
    if config.dimensions == dimensions:
        return params, config
    rest = {k: v for k, v in params.items() if k != "regressor"}
    head = {"regressor": _fresh_dense(config, len(dimensions), seed + 1)} if dimensions else {}
    return {**rest, **head}, config.replace(dimensions=dimensions)


def heads_for_task(params: Any, config: HubertConfig, task: str, classes: tuple[str, ...] = EMOTION_CLASSES,
                   seed: int = 0) -> tuple[Any, HubertConfig]:
    """The heads a task trains: categorical the classes, dimensional arousal/valence/dominance, both both."""
    if task not in TASKS:
        raise TaskError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    dims = DIMENSIONS if task != "categorical" else ()
    if dims:  # add the regressor first, so a model never passes through a state with no head
        params, config = with_dimensions(params, config, dims, seed)
    params, config = with_head(params, config, len(classes) if task != "dimensional" else 0,
                               classes if task != "dimensional" else None, seed)
    return with_dimensions(params, config, dims, seed)


def format_task_weights(weights) -> str:
    """(categorical, dimensional) -> 'categorical=W,dimensional=W', the text parse_task_weights reads."""
    return ",".join(f"{name}={w}" for name, w in zip(("categorical", "dimensional"), weights))


def parse_task_weights(text: str | None) -> tuple[float, float]:
    """'categorical=W,dimensional=W' (either may be left out: weight 1) -> (categorical, dimensional)."""
    weights = {"categorical": 1.0, "dimensional": 1.0}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        if name.strip() not in weights:
            raise TaskError(f"--task-weights: unknown task {name.strip()!r}; use categorical=W,dimensional=W")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise TaskError(f"--task-weights: {name.strip()} needs a number, got {value!r}") from None
    return weights["categorical"], weights["dimensional"]
