"""The encoder's layer stack as bound Flax submodules in one loop: nn.scan over layer groups, a nested nn.scan over
each group's copies (exhubert_jax.expansion_spec gives the order and each slot's rule).

The parameters stay where expansion_spec puts them, in the Encoder's `layers` and `expansion`; `layer_stack` shows
them to the scanned modules as the module tree of one group (`group_view`), so the layers are ordinary submodules:
`sow`, method interceptors and the adapters reach them. Each slot sows the state after it into "intermediates" as
`hidden_states`: (L, ...) under `stack/original`, (L, C, ...) under `stack/copies`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .config import HubertConfig
from .expansion_spec import COPY_LAYERS, GATE, ZLL, SlotRule, group_rules, run_slot
from .layers import EncoderLayer

Array = jax.Array
# Collections stacked on the loop axes: the parameters, and what the layers sow.
STACKED = {"params": 0, "intermediates": 0}
# Fresh dropout keys for every layer; "params" too, though the stored tree always holds every parameter.
SPLIT = {"params": True, "dropout": True}


class StackSlot(nn.Module):
    """One layer of the stack and what follows it (expansion_spec.run_slot); LayerDrop may skip it when training.

    Returns (the state after it, that state again when `collect`, for the stacked hidden states).
    """

    config: HubertConfig
    rule: SlotRule
    dtype: Any = jnp.float32
    attention_implementation: str | None = None
    deterministic: bool = True
    collect: bool = False

    @nn.compact
    def __call__(self, h: Array, mask: Array | None) -> tuple[Array, Array | None]:
        cfg = self.config
        layer = EncoderLayer(cfg, self.dtype, self.attention_implementation, name="layer")
        out = layer(h, mask, self.deterministic)
        # Its parameters are the layout's Linear (GATE or ZLL), always present in the stored tree.
        linear = nn.Dense(cfg.hidden_size, dtype=self.dtype, name="linear") if self.rule.linear else None
        out = run_slot(self.rule, h, out, linear)
        if not self.deterministic and cfg.layerdrop > 0.0:
            out = jnp.where(jax.random.uniform(self.make_rng("dropout")) >= cfg.layerdrop, out, h)
        self.sow("intermediates", "hidden_states", out)
        return out, (out if self.collect else None)


class LayerGroup(nn.Module):
    """One loop step: original layer i, then its copies (i, 0) .. (i, C-1) in a nested nn.scan."""

    config: HubertConfig
    dtype: Any = jnp.float32
    attention_implementation: str | None = None
    deterministic: bool = True
    collect: bool = False

    @nn.compact
    def __call__(self, h: Array, mask: Array | None) -> tuple[Array, Array | None]:
        cfg = self.config
        rules = group_rules(cfg.expansion_copies, cfg.expansion_style)
        fields = (self.dtype, self.attention_implementation, self.deterministic, self.collect)
        h, first = StackSlot(cfg, rules[0], *fields, name="original")(h, mask)
        if not cfg.expansion_copies:
            return h, (None if first is None else first[None])
        copies = nn.scan(StackSlot, variable_axes=STACKED, split_rngs=SPLIT, in_axes=(nn.broadcast,),
                         length=cfg.expansion_copies)
        h, rest = copies(cfg, rules[1], *fields, name="copies")(h, mask)
        return h, (None if first is None else jnp.concatenate([first[None], rest]))


def group_view(layers: Any, expansion: dict) -> dict:
    """The stored stack (expansion_spec's `layers`, `expansion`) as LayerGroup's parameter tree, stacked on L."""
    original = {"layer": layers}
    if GATE[-1] in expansion:
        original["linear"] = expansion[GATE[-1]]
    view = {"original": original}
    if COPY_LAYERS[-1] in expansion:
        view["copies"] = {"layer": expansion[COPY_LAYERS[-1]]}
        if ZLL[-1] in expansion:
            view["copies"]["linear"] = expansion[ZLL[-1]]
    return view


def layer_stack(config: HubertConfig, layers: Any, expansion: dict, remat: bool = False, unroll: int = 1) -> type:
    """LayerGroup scanned over the L groups (`unroll` per loop iteration, rematerialised with `remat`), reading the
    stored `layers` and `expansion`; called as (h, mask) -> (h, per-slot states (L, 1 + C, ...) or None)."""
    group = nn.remat(LayerGroup, prevent_cse=False) if remat else LayerGroup
    scanned = nn.scan(group, variable_axes=STACKED, split_rngs=SPLIT, in_axes=(nn.broadcast,),
                      length=config.num_hidden_layers, unroll=unroll)
    # The stack stores nothing of its own (`stored` is empty): its parameters are the Encoder's, seen as one group.
    return nn.map_variables(scanned, "params", trans_in_fn=lambda stored: {"params": group_view(layers, expansion)})
