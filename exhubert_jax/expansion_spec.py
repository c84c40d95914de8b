"""Where Backbone Block Expansion lives in the parameter pytree, in which order layers run, what ZLLs are, what trains.

The one description of an expanded model that the Flax model, `expand`, the freezing rules and the PyTorch
converters share. Layout (L original layers, C copies per layer, hidden size D):

    hubert/encoder/layers/...             (L, ...)        the original layers
    hubert/encoder/expansion/layers/...   (L, C, ...)     the copies
    hubert/encoder/expansion/zll/kernel   (L, C, D, D)    style "zll": one zero Linear D->D per copy
    hubert/encoder/expansion/zll/bias     (L, C, D)

Execution order: original i, then its copies (i, 0) .. (i, C-1), then original i+1 (paper, Sec. 3.2: each copy is
inserted right after the block it copies). A copy with a ZLL computes h + zll(copy(h)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

ORIGINAL_LAYERS = ("hubert", "encoder", "layers")
EXPANSION = ("hubert", "encoder", "expansion")
COPY_LAYERS = (*EXPANSION, "layers")
ZLL = (*EXPANSION, "zll")
# Parameters of a copy that style="zero_out" zeroes (LLaMA Pro: the block's output projections).
ZERO_OUT_MODULES = (("attention", "out_proj"), ("feed_forward", "output_dense"))
FREEZE_MODES = ("original", "none")


class LayerSlot(NamedTuple):
    """One layer of the flattened stack: its position in execution order and where its parameters live."""

    position: int  # index in execution order (the PyTorch encoder.layers index)
    layer: int  # original layer i
    copy: int | None  # None for the original, c for its c-th copy

    @property
    def subtree(self) -> tuple[str, ...]:
        """Pytree path of the stacked layer parameters this slot reads."""
        return ORIGINAL_LAYERS if self.copy is None else COPY_LAYERS

    @property
    def index(self) -> tuple[int, ...]:
        """Index into the stacked leaves of `subtree`."""
        return (self.layer,) if self.copy is None else (self.layer, self.copy)


def layer_slots(n_layers: int, copies: int) -> list[LayerSlot]:
    """Every layer of the expanded stack in execution order."""
    order = [(i, c) for i in range(n_layers) for c in (None, *range(copies))]
    return [LayerSlot(j, i, c) for j, (i, c) in enumerate(order)]


def zll_slots(n_layers: int, copies: int, style: str | None) -> list[LayerSlot]:
    """The layers that carry a ZLL: every copy for style "zll", none otherwise."""
    if style != "zll":
        return []
    return [s for s in layer_slots(n_layers, copies) if s.copy is not None]


def subtree(params: dict, path: tuple[str, ...]) -> Any:
    """The subtree of `params` at `path`."""
    for key in path:
        params = params[key]
    return params


def with_subtree(params: dict, path: tuple[str, ...], value: Any) -> dict:
    """A copy of `params` (new dicts along `path`, leaves shared) with `value` at `path`."""
    head, *rest = path
    return {**params, head: with_subtree(params.get(head, {}), tuple(rest), value) if rest else value}


def zll_shapes(n_layers: int, copies: int, dim: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the stacked ZLL leaves (a Flax Dense: kernel (in, out), bias (out,))."""
    return {"kernel": (n_layers, copies, dim, dim), "bias": (n_layers, copies, dim)}


def zero_linear(n_layers: int, copies: int, dim: int, dtype: Any = jnp.float32) -> dict:
    """ZLL parameters at initialisation: weight and bias zero, so each copy starts as the identity."""
    return {k: jnp.zeros(s, dtype) for k, s in zll_shapes(n_layers, copies, dim).items()}


def zll_residual(h: Any, out: Any, kernel: Any, bias: Any) -> Any:
    """A copy's output through its ZLL with the skip connection: h + (out @ kernel + bias)."""
    return h + (jnp.dot(out, kernel.astype(out.dtype)) + bias.astype(out.dtype))


def trainable_subtrees(copies: int, freeze: str) -> dict[tuple[str, ...], bool]:
    """Whether the original layers and the expansion train: originals are frozen only in an expanded model with
    freeze="original" (paper, Sec. 3.2); copies and ZLLs always train."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    return {ORIGINAL_LAYERS: not (copies and freeze == "original"), EXPANSION: True}
