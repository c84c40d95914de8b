"""The one description of the layer stack: where each layer's parameters live, what follows it, in which order.

The Flax model, its initialisation, `expand`, the freezing rules, the PyTorch key table, the peft export and the
PyTorch modules all read it. Pytree layout (L original layers, C copies per layer, hidden size D):

    hubert/encoder/layers/...             (L, ...)        the original layers
    hubert/encoder/expansion/layers/...   (L, C, ...)     the copies
    hubert/encoder/expansion/zll/kernel   (L, C, D, D)    a Linear D->D after each copy, when the layout has one
    hubert/encoder/expansion/gate/kernel  (L, D, D)       a Linear D->D after each original, when the layout has one
    (each with a bias of the same leading axes)

Execution order: original i, then its copies (i, 0) .. (i, C-1), then original i+1 (paper, Sec. 3.2: each copy is
inserted right after the block it copies). A layout gives the rule of each kind of slot: an optional output Linear
with its initial value, and whether the slot's input is added to its output (the skip). A slot computes

    out = layer(h);  out = out @ W + b (if it has a Linear);  h = h + out (if it has the skip), else h = out

To change where Linears and skips go, edit LAYOUTS: nothing else restates it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

ORIGINAL_LAYERS = ("hubert", "encoder", "layers")
EXPANSION = ("hubert", "encoder", "expansion")
COPY_LAYERS = (*EXPANSION, "layers")
ZLL = (*EXPANSION, "zll")  # the copies' Linears
GATE = (*EXPANSION, "gate")  # the originals' Linears
# Parameters of a copy that a layout with zero_out zeroes (LLaMA Pro: the block's output projections).
ZERO_OUT_MODULES = (("attention", "out_proj"), ("feed_forward", "output_dense"))
FREEZE_MODES = ("original", "none")
LINEAR_INITS = ("zero", "identity")


class SlotRule(NamedTuple):
    """What follows one kind of layer: an output Linear D->D initialised to `linear` (None: no Linear) and the skip."""

    linear: str | None = None
    skip: bool = False


class Layout(NamedTuple):
    """An expansion layout: the rule after each original, the rule after each copy, and whether copies are zeroed."""

    original: SlotRule
    copy: SlotRule
    zero_out: bool = False
    summary: str = ""


LAYOUTS: dict[str, Layout] = {
    # ExHuBERT as the paper describes it: h + ZLL(copy(h)), the ZLL starting at zero (Sec. 3.2).
    "zll": Layout(SlotRule(), SlotRule("zero", skip=True),
                  summary="a zero Linear with a skip after each copy (paper, Sec. 3.2)"),
    # LLaMA Pro: the copy's output projections start at zero, so the copy is the identity; plain HuBERT modules.
    "zero_out": Layout(SlotRule(), SlotRule(), zero_out=True,
                       summary="the copies' out_proj and output_dense zeroed (LLaMA Pro)"),
    # The released ExHuBERT checkpoint: a Linear after every layer, the originals' starting as the identity, the
    # copies' at zero with the skip, so a = G(L(h)), then h = G'(L'(a)) + a.
    "gated": Layout(SlotRule("identity"), SlotRule("zero", skip=True),
                    summary="a Linear after every layer, originals' identity, copies' zero with a skip (released model)"),
}
STYLES = tuple(LAYOUTS)


def layout(style: str | None) -> Layout:
    """The layout of an expansion style (an unexpanded model has none)."""
    if style not in LAYOUTS:
        raise ValueError(f"expansion style must be one of {', '.join(STYLES)}, got {style!r}")
    return LAYOUTS[style]


class LayerSlot(NamedTuple):
    """One layer of the flattened stack: its position in execution order, its parameters and what follows it."""

    position: int  # index in execution order (the PyTorch encoder.layers index)
    layer: int  # original layer i
    copy: int | None  # None for the original, c for its c-th copy
    rule: SlotRule = SlotRule()

    @property
    def subtree(self) -> tuple[str, ...]:
        """Pytree path of the stacked layer parameters this slot reads."""
        return ORIGINAL_LAYERS if self.copy is None else COPY_LAYERS

    @property
    def index(self) -> tuple[int, ...]:
        """Index into the stacked leaves of `subtree` (and of `linear`)."""
        return (self.layer,) if self.copy is None else (self.layer, self.copy)

    @property
    def linear(self) -> tuple[str, ...] | None:
        """Pytree path of the stacked output Linear this slot reads, or None."""
        if self.rule.linear is None:
            return None
        return GATE if self.copy is None else ZLL


UNEXPANDED = Layout(SlotRule(), SlotRule())


def _rules(copies: int, style: str | None) -> Layout:
    """The layout of a stack with `copies` copies per layer (an unexpanded stack has no Linears)."""
    return layout(style) if copies else UNEXPANDED


def layer_slots(n_layers: int, copies: int, style: str | None = None) -> list[LayerSlot]:
    """Every layer of the (expanded) stack in execution order, with the rule of its layout."""
    rules = _rules(copies, style)
    if any(rule.skip and rule.linear is None for rule in rules[:2]):
        raise ValueError(f"layout {style!r}: a skip needs a Linear (h + Linear(layer(h)))")
    order = [(i, c) for i in range(n_layers) for c in (None, *range(copies))]
    return [LayerSlot(j, i, c, rules.original if c is None else rules.copy) for j, (i, c) in enumerate(order)]


def group_rules(copies: int, style: str | None) -> list[SlotRule]:
    """The rules of one group (an original, then its copies): the same for every original layer."""
    return [s.rule for s in layer_slots(1, copies, style)]


def linear_slots(n_layers: int, copies: int, style: str | None) -> list[LayerSlot]:
    """The slots followed by an output Linear."""
    return [s for s in layer_slots(n_layers, copies, style) if s.linear is not None]


def linear_shapes(n_layers: int, copies: int, style: str | None, dim: int) -> dict[tuple[str, ...], dict]:
    """{Linear path: {"kernel": shape, "bias": shape}} of the layout's stacked Linears (Flax Dense layout)."""
    rules = _rules(copies, style)
    lead = {GATE: (n_layers,), ZLL: (n_layers, copies)}
    present = {GATE: rules.original.linear is not None, ZLL: rules.copy.linear is not None}
    return {path: {"kernel": (*lead[path], dim, dim), "bias": (*lead[path], dim)}
            for path in (GATE, ZLL) if present[path]}


def linear_init(path: tuple[str, ...], style: str) -> str:
    """The initial value ('zero' or 'identity') of the Linears at `path` in `style`."""
    rules = layout(style)
    return (rules.original if path == GATE else rules.copy).linear


def initial_linear(init: str, shapes: dict, dtype: Any = jnp.float32) -> dict:
    """Stacked Linear parameters at initialisation: zero weight and bias, or the identity weight and zero bias."""
    if init not in LINEAR_INITS:
        raise ValueError(f"Linear init must be one of {LINEAR_INITS}, got {init!r}")
    kernel = jnp.zeros(shapes["kernel"], dtype)
    if init == "identity":
        kernel = kernel + jnp.eye(shapes["kernel"][-1], dtype=dtype)
    return {"kernel": kernel, "bias": jnp.zeros(shapes["bias"], dtype)}


def initial_linears(n_layers: int, copies: int, style: str, dim: int, dtype: Any = jnp.float32) -> dict:
    """{path: params} of every Linear of the layout at initialisation (the expanded model equals the original)."""
    return {path: initial_linear(linear_init(path, style), shapes, dtype)
            for path, shapes in linear_shapes(n_layers, copies, style, dim).items()}


def run_slot(rule: SlotRule, h: Any, out: Any, linear: Callable[[Any], Any] | None) -> Any:
    """The state after a slot: the layer output `out` through the slot's Linear, plus `h` if the slot skips."""
    if rule.linear is not None:
        out = linear(out)
    return h + out if rule.skip else out


def subtree(params: dict, path: tuple[str, ...]) -> Any:
    """The subtree of `params` at `path`."""
    for key in path:
        params = params[key]
    return params


def with_subtree(params: dict, path: tuple[str, ...], value: Any) -> dict:
    """A copy of `params` (new dicts along `path`, leaves shared) with `value` at `path`."""
    head, *rest = path
    return {**params, head: with_subtree(params.get(head, {}), tuple(rest), value) if rest else value}


def trainable_subtrees(copies: int, freeze: str) -> dict[tuple[str, ...], bool]:
    """Whether each stacked subtree trains, in rule order: the originals and their Linears are frozen only in an
    expanded model with freeze="original" (paper, Sec. 3.2); copies and their Linears always train."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    originals = not (copies and freeze == "original")
    return {ORIGINAL_LAYERS: originals, GATE: originals, EXPANSION: True}
