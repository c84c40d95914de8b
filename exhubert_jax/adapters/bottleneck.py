"""Bottleneck adapters: h + up(act(down(h))) on a sub-layer's output, before its residual addition.

Options: size (bottleneck width, default 64), style houlsby (after attention and after feed-forward; Houlsby et al.,
2019) or pfeiffer (after feed-forward only; Pfeiffer et al., 2021). The up-projection starts at zero, so the adapted
model starts as the identity; only the adapters and the head train. Not mergeable (a non-linear detour).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..layers import normal_init
from .core import Method, leaf_regex, register

NAME = "bottleneck"


def init_leaf(name: str, shape: tuple[int, ...], dtype, key: jax.Array) -> jax.Array:
    """down: normal(0.02) kernel, zero bias; up: zeros."""
    if name.endswith("/down/kernel"):
        return normal_init(key, shape, dtype)
    return jnp.zeros(shape, dtype)


METHOD = register(Method(NAME, leaf_regex(r"/(attention|ffn)_adapter/"), init_leaf))


def add(params, config, *, seed: int = 0, **options):
    """Bottleneck adapters in every encoder layer: (new_params, new_config, labels)."""
    from .core import add as add_method
    return add_method(params, config, NAME, seed=seed, **options)
