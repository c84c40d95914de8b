"""Bottleneck adapters: h + up(act(down(h))) on a sub-layer's output, before its residual addition.

Options: size (bottleneck width, default 64), style houlsby (after attention and after feed-forward; Houlsby et al.,
2019) or pfeiffer (after feed-forward only; Pfeiffer et al., 2021). The up-projection starts at zero, so the adapted
model starts as the identity; only the adapters and the head train. Not mergeable (a non-linear detour).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.adapters.core import Method, leaf_regex, register
from exhubert_jax.adapters.interceptors import after
from exhubert_jax.adapters.registry import Option
from exhubert_jax.model.layers import activation, normal_init

NAME = "bottleneck"
# Sub-layers each style adapts, and the name of the adapter's parameter subtree in the layer.
SITES = {"houlsby": ("attention", "feed_forward"), "pfeiffer": ("feed_forward",)}
SUBTREE = {"attention": "attention_adapter", "feed_forward": "ffn_adapter"}


class Bottleneck(nn.Module):
    """h + up(act(down(h))); the up-projection starts at zero, so it starts as the identity."""

    size: int
    act: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        z = nn.Dense(self.size, dtype=self.dtype, kernel_init=normal_init, name="down")(h)
        z = activation(self.act)(z)
        return h + nn.Dense(h.shape[-1], dtype=self.dtype, kernel_init=nn.initializers.zeros, name="up")(z)


def init_leaf(name: str, shape: tuple[int, ...], dtype, key: jax.Array, base: dict) -> jax.Array:
    """down: normal(0.02) kernel, zero bias; up: zeros."""
    if name.endswith("/down/kernel"):
        return normal_init(key, shape, dtype)
    return jnp.zeros(shape, dtype)


def adapts(context, args: tuple, options: dict) -> bool:
    """An encoder layer's branch the style adapts."""
    return context.method_name == "branch" and args[0] in SITES[options["style"]]


def on_branch(layer: nn.Module, args: tuple, h: jax.Array, options: dict) -> jax.Array:
    """The branch output through a Bottleneck created in the layer's scope."""
    return Bottleneck(options["size"], layer.config.hidden_act, layer.dtype, parent=layer, name=SUBTREE[args[0]])(h)


METHOD = register(Method(NAME, leaf_regex(r"/(attention|ffn)_adapter/"), init_leaf, intercept=after(adapts, on_branch),
                         options={"size": Option("int", 64), "style": Option("choice", "houlsby", tuple(SITES))}))
