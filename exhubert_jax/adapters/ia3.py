"""IA3 (Liu et al., 2022): learned vectors that scale the outputs of k, v and the first feed-forward projection.

Option: targets among q, k, v, out, ff1, ff2 joined by '+' (default k+v+ff1). The vectors start at one; only they
and the head train. Mergeable: kernel and bias columns times the vector.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Method, leaf_regex, map_dense, register

NAME = "ia3"


def init_leaf(name: str, shape: tuple[int, ...], dtype, key: jax.Array) -> jax.Array:
    """Ones: the identity at initialisation."""
    return jnp.ones(shape, dtype)


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


METHOD = register(Method(NAME, leaf_regex(r"/ia3$"), init_leaf, merge=merge))


def add(params, config, *, seed: int = 0, **options):
    """IA3 on `targets` of every encoder layer: (new_params, new_config, labels)."""
    from .core import add as add_method
    return add_method(params, config, NAME, seed=seed, **options)
