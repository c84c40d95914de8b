"""Functional adapters over parameter pytrees: bbe, lora, ia3, bitfit, bottleneck; composable and mergeable.

Every module of this package but `core` is a method that registers itself (adapter_spec.register) on import.

    params, config, labels = adapters.add(params, config, "lora", r=8, alpha=16, targets=("q", "v"))
    params, config, labels = adapters.apply_spec(params, config, "bbe:copies=1,style=zll")  # same, from a string
    plain_params, plain_config = adapters.merge(params, config)                             # lora, ia3, bitfit
    plain_params, plain_config, folded = adapters.merge_all(params, config)   # the same; refuses bottleneck

`labels` goes to exhubert_jax.optim.make_optimizer; the model's apply needs no other change.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Sequence

from ..adapter_spec import REGISTRY, TARGETS, AdapterSpecError, canonical, format_spec, lookup, parse_spec
from ..config import HubertConfig
from ..expansion import expand
from . import core
from .core import AdapterError, labels, merge, merge_all, unmergeable

BUILTIN = tuple(importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_") and m.name != "core")


def add(params: Any, config: HubertConfig, method: str, **options: Any) -> tuple[dict, HubertConfig, dict]:
    """Add adapter `method` with its options: (new_params, new_config, labels); the inputs are never mutated."""
    own = lookup(method).add
    return own(params, config, **options) if own else core.add(params, config, method, **options)


def apply_spec(params: Any, config: HubertConfig, spec: str | Sequence[str],
               seed: int = 0) -> tuple[dict, HubertConfig, dict]:
    """Apply one spec ('lora:r=8,alpha=16,targets=q+v') or several in order: (params, config, labels)."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise AdapterSpecError("no adapter spec given")
    out_labels = None
    for text in specs:
        method, options = parse_spec(text)
        if REGISTRY[method].init_leaf is not None:  # methods with random initial leaves
            options["seed"] = seed
        params, config, out_labels = add(params, config, method, **options)
    return params, config, out_labels


__all__ = ["AdapterError", "AdapterSpecError", "REGISTRY", "TARGETS", "add", "apply_spec", "canonical",
           "expand", "format_spec", "labels", "merge", "merge_all", "parse_spec", "unmergeable"]
