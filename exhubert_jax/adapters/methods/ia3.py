"""IA3 (Liu et al., 2022): learned vectors that scale the outputs of k, v and the first feed-forward projection.

Option: targets among q, k, v, out, ff1, ff2 joined by '+' (default k+v+ff1). The vectors start at one; only they
and the head train. Mergeable: kernel and bias columns times the vector. It sits outside LoRA on a shared target:
the projection computes (x W + b + s x A B) * l.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.adapters.core import Method, leaf_regex, map_dense, register
from exhubert_jax.adapters.interceptors import after, dense_targets
from exhubert_jax.adapters.registry import Option

NAME = "ia3"


def init_leaf(name: str, shape: tuple[int, ...], dtype, key: jax.Array, base: dict) -> jax.Array:
    """Ones: the identity at initialisation."""
    return jnp.ones(shape, dtype)


def on_dense(dense: nn.Dense, args: tuple, y: jax.Array, options: dict) -> jax.Array:
    """y times a vector l (out,) created in the projection's scope."""
    return y * dense.param("ia3", nn.initializers.ones, (dense.features,), jnp.float32).astype(y.dtype)


def merge(params: dict, options: dict) -> dict:
    """Scale each kernel's output columns and bias by its vector and drop the vectors."""
    def fold(node):
        if "ia3" not in node:
            return node
        scale = node.pop("ia3")
        node["kernel"] = node["kernel"] * scale[..., None, :]
        node["bias"] = node["bias"] * scale
        return node

    return map_dense(params, fold)


METHOD = register(Method(NAME, leaf_regex(r"/ia3$"), init_leaf, merge=merge,
                         intercept=after(dense_targets, on_dense), order=1,
                         options={"targets": Option("targets", ("k", "v", "ff1"))}))
