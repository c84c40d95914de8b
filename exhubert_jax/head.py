"""Classification heads: swap in a fresh classifier when the classes change (a corpus's native labels, say)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .config import HubertConfig
from .layers import normal_init


def with_head(params: Any, config: HubertConfig, num_labels: int, label_names: tuple[str, ...] | None,
              seed: int = 0) -> tuple[Any, HubertConfig]:
    """(params, config) with a fresh classifier when the number or names of classes differ; projector is kept.

    A head of the right size without names (e.g. a converted checkpoint's LABEL_i) is kept and named.
    """
    label_names = tuple(label_names) if label_names is not None else None
    if config.num_labels == num_labels and config.label_names in (None, label_names):
        return params, (config if config.label_names == label_names else config.replace(label_names=label_names))
    dense = nn.Dense(num_labels, kernel_init=normal_init)
    fresh = dense.init(jax.random.PRNGKey(seed), jnp.zeros((1, config.classifier_proj_size)))["params"]
    return {**params, "classifier": jax.device_get(fresh)}, config.replace(num_labels=num_labels,
                                                                           label_names=label_names)
