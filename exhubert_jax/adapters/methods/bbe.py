"""Backbone Block Expansion (ExHuBERT) behind the adapter protocol: exhubert_jax.model.expansion.expand plus the record.

Options: copies (per layer, default 1), style (an expansion_spec layout: zll, zero_out or gated), freeze original (default) or none. Must be the first
adapter. Its Zero Linear Layers count as adapter leaves, so methods added later (e.g. LoRA on the frozen copies)
keep them trainable.
"""

from __future__ import annotations

from exhubert_jax.adapters.core import AdapterError, Method, labels, leaf_regex, register
from exhubert_jax.adapters.registry import Option, format_spec, normalise
from exhubert_jax.model.expansion import expand
from exhubert_jax.model.expansion_layout import FREEZE_MODES, GATE, STYLES, ZLL

NAME = "bbe"


def add(params, config, **options):
    """expand() with the spec recorded in the config: (new_params, new_config, labels)."""
    if config.adapters:
        raise AdapterError(f"bbe must be the first adapter; the model already has {list(config.adapters)}")
    options = normalise(NAME, options)
    new_params, new_config, _ = expand(params, config, **options)
    new_config = new_config.replace(adapters=(format_spec(NAME, options),))
    return new_params, new_config, labels(new_params, new_config)


# The layout's Linears (ZLLs after copies, gates after originals) belong to bbe, so later methods keep their labels.
METHOD = register(Method(NAME, leaf_regex(rf"^{'/'.join(ZLL)}/|^{'/'.join(GATE)}/"), add=add, options={
    "copies": Option("int", 1), "style": Option("choice", "zll", STYLES),
    "freeze": Option("choice", "original", FREEZE_MODES)}))
