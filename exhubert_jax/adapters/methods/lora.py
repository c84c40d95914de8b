"""LoRA (Hu et al., 2021): W x + (alpha / r) B A x on chosen projections; A random, B zero, the base frozen.

Options: r (rank, default 8), alpha (default 16), targets among q, k, v, out, ff1, ff2 joined by '+' (default q+v).
Only the LoRA matrices and the head train, as with PyTorch peft. Mergeable: W <- W + (alpha / r) A B.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.adapters.core import Method, leaf_regex, map_dense, register
from exhubert_jax.adapters.interceptors import after, dense_targets
from exhubert_jax.adapters.registry import Option

NAME = "lora"
# A as PEFT initialises it (torch kaiming_uniform with a=sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
A_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def init_leaf(name: str, shape: tuple[int, ...], dtype, key: jax.Array, base: dict) -> jax.Array:
    """A: PEFT's uniform init per layer (fan-in = its input size); B: zeros (identity at initialisation)."""
    if name.endswith("/lora_b"):
        return jnp.zeros(shape, dtype)
    stacked = tuple(range(len(shape) - 2))  # (L, in, r) or (L, copies, in, r): one init per layer
    return jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", batch_axis=stacked)(key, shape, dtype)


def on_dense(dense: nn.Dense, args: tuple, y: jax.Array, options: dict) -> jax.Array:
    """y + (alpha / r) (x A) B, with A (in, r) and B (r, out) created in the projection's scope."""
    x, rank = args[0], options["r"]
    a = dense.param("lora_a", A_INIT, (x.shape[-1], rank), jnp.float32)
    b = dense.param("lora_b", nn.initializers.zeros, (rank, dense.features), jnp.float32)
    low = jnp.dot(jnp.dot(x.astype(dense.dtype), a.astype(dense.dtype)), b.astype(dense.dtype))
    return y + (low * (options["alpha"] / rank)).astype(y.dtype)


def merge(params: dict, options: dict) -> dict:
    """Fold every A B into its kernel and drop the LoRA leaves."""
    scale = options["alpha"] / options["r"]

    def fold(node):
        if "lora_a" not in node:
            return node
        a, b = node.pop("lora_a"), node.pop("lora_b")
        node["kernel"] = node["kernel"] + scale * jnp.einsum("...ir,...ro->...io", a, b,
                                                             precision=jax.lax.Precision.HIGHEST)
        return node

    return map_dense(params, fold)


METHOD = register(Method(
    NAME, leaf_regex(r"/lora_[ab]$"), init_leaf, merge=merge, intercept=after(dense_targets, on_dense), order=0,
    options={"r": Option("int", 8), "alpha": Option("float", 16.0), "targets": Option("targets", ("q", "v"))}))
