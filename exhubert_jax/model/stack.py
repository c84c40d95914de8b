"""The encoder's layer stack as bound Flax submodules in one loop: nn.scan over layer groups, a nested nn.scan over
each group's copies (exhubert_jax.model.expansion_layout gives the order and each slot's rule).

The parameters stay where expansion_spec puts them, in the Encoder's `layers` and `expansion`; `layer_stack` shows
them to the scanned modules as the module tree of one group (`group_view`), so the layers are ordinary submodules:
`sow`, method interceptors and the adapters reach them. Each slot sows the state after it into "intermediates" as
`hidden_states`: (L, ...) under `stack/original`, (L, C, ...) under `stack/copies`. In training, each slot takes
its key from the Encoder's split of its dropout key (one per slot in execution order): half starts the layer's own
dropout stream, half draws its LayerDrop.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import lift

from exhubert_jax.model.config import HubertConfig
from exhubert_jax.model.expansion_layout import COPY_LAYERS, GATE, ZLL, SlotRule, group_rules, run_slot
from exhubert_jax.model.layers import EncoderLayer

Array = jax.Array
# Collections stacked on the loop axes: the parameters, and what the layers sow.
STACKED = {"params": 0, "intermediates": 0}
# Fresh "params" keys per step, though the stored tree always holds every parameter; dropout keys come as inputs.
SPLIT = {"params": True}


def restart_dropout_streams(scopes) -> None:
    """Start each scope's dropout stream afresh from its key, as an apply of the layer alone does.

    Flax has no public API for this: it is the one place that touches a Flax internal (Scope.rng_counters), and
    tests/test_stack.py fails loudly, naming this function, when a Flax upgrade changes it."""
    for scope in jax.tree_util.tree_leaves(scopes):
        if not isinstance(getattr(scope, "rng_counters", None), dict):
            raise RuntimeError(f"flax {flax.__version__}: Scope.rng_counters is gone; exhubert_jax.model.stack."
                               "restart_dropout_streams must start a layer's dropout stream another way")
        scope.rng_counters = {"dropout": 0}


def _keyed(fn):
    """A lifted transform: `fn`, with its dropout stream started from the key given as its first argument, exactly
    as an apply of the layer alone with rngs={"dropout": key} draws it (so a seed keeps its training streams)."""
    def inner(scope_fn, repack_fn, variable_groups, rng_groups, key, *args):
        scopes = scope_fn(variable_groups, (({"dropout": key},),))
        restart_dropout_streams(scopes)  # a stream of its own, fresh on every trace
        return fn(scopes, *args), repack_fn(scopes)
    return lift.pack(inner, (True,), (True,), ("dropout",), name="keyed")


KeyedLayer = nn.transforms.lift_transform(_keyed, EncoderLayer)


class StackSlot(nn.Module):
    """One layer of the stack and what follows it (expansion_spec.run_slot); LayerDrop may skip it when training.

    Returns (the state after it, that state again when `collect`, for the stacked hidden states).
    """

    config: HubertConfig
    rule: SlotRule
    dtype: Any = jnp.float32
    attention_implementation: str | None = None
    collect: bool = False

    @nn.compact
    def __call__(self, h: Array, mask: Array | None, key: Array | None) -> tuple[Array, Array | None]:
        cfg = self.config
        layer_args = (self.dtype, self.attention_implementation)
        if key is None:
            out = EncoderLayer(cfg, *layer_args, name="layer")(h, mask, True)
        else:
            dropout_key, layerdrop_key = jax.random.split(key)
            out = KeyedLayer(cfg, *layer_args, name="layer")(dropout_key, h, mask, False)
        # Its parameters are the layout's Linear (GATE or ZLL), always present in the stored tree.
        linear = nn.Dense(cfg.hidden_size, dtype=self.dtype, name="linear") if self.rule.linear else None
        out = run_slot(self.rule, h, out, linear)
        if key is not None and cfg.layerdrop > 0.0:
            out = jnp.where(jax.random.uniform(layerdrop_key) >= cfg.layerdrop, out, h)
        self.sow("intermediates", "hidden_states", out)
        return out, (out if self.collect else None)


class LayerGroup(nn.Module):
    """One loop step: original layer i, then its copies (i, 0) .. (i, C-1) in a nested nn.scan."""

    config: HubertConfig
    dtype: Any = jnp.float32
    attention_implementation: str | None = None
    collect: bool = False

    @nn.compact
    def __call__(self, h: Array, mask: Array | None, keys: Array | None) -> tuple[Array, Array | None]:
        cfg = self.config
        rules = group_rules(cfg.expansion_copies, cfg.expansion_style)
        fields = (self.dtype, self.attention_implementation, self.collect)
        h, first = StackSlot(cfg, rules[0], *fields, name="original")(h, mask, None if keys is None else keys[0])
        if not cfg.expansion_copies:
            return h, (None if first is None else first[None])
        copies = nn.scan(StackSlot, variable_axes=STACKED, split_rngs=SPLIT, in_axes=(nn.broadcast, 0),
                         length=cfg.expansion_copies)
        h, rest = copies(cfg, rules[1], *fields, name="copies")(h, mask, None if keys is None else keys[1:])
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
    stored `layers` and `expansion`; called as (h, mask, per-slot dropout keys (L, 1 + C, ...) or None in eval)
    -> (h, per-slot states (L, 1 + C, ...) or None)."""
    group = nn.remat(LayerGroup, prevent_cse=False) if remat else LayerGroup
    scanned = nn.scan(group, variable_axes=STACKED, split_rngs=SPLIT, in_axes=(nn.broadcast, 0),
                      length=config.num_hidden_layers, unroll=unroll)
    # The stack stores nothing of its own (`stored` is empty): its parameters are the Encoder's, seen as one group.
    return nn.map_variables(scanned, "params", trans_in_fn=lambda stored: {"params": group_view(layers, expansion)})
