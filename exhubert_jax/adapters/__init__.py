"""Functional adapters over parameter pytrees: bbe, lora, ia3, bitfit, bottleneck; composable and mergeable.

Every module of adapters.methods is a method that registers itself (adapters.registry.register) on import. The
model never imports this package: `wrap` / `build` run a plain model with the config's adapters installed.

    params, config, labels = adapters.add(params, config, "lora", r=8, alpha=16, targets=("q", "v"))
    params, config, labels = adapters.apply_spec(params, config, "bbe:copies=1,style=zll")  # same, from a string
    plain_params, plain_config = adapters.merge(params, config)                             # lora, ia3, bitfit
    plain_params, plain_config, folded = adapters.merge_all(params, config)   # the same; refuses bottleneck

`labels` goes to exhubert_jax.training.optimizer.make_optimizer; the model's apply needs no other change.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Sequence

from exhubert_jax.adapters import core, methods
from exhubert_jax.adapters.core import AdapterError, check_plain, labels, merge, merge_all, unmergeable
from exhubert_jax.adapters.registry import (REGISTRY, TARGETS, AdapterSpecError, canonical, format_spec, lookup,
                                            options_of, parse_spec)
from exhubert_jax.adapters.wrapper import Adapted, build, init_params, param_shapes, unwrap, with_config, wrap
from exhubert_jax.model.config import HubertConfig
from exhubert_jax.model.expansion import expand

# Every module of adapters.methods registers its method on import.
BUILTIN = tuple(importlib.import_module(f"{methods.__name__}.{m.name}") for m in pkgutil.iter_modules(methods.__path__)
                if not m.name.startswith("_"))


def checked_specs(texts: list[str], flag: str = "--adapter") -> list[str]:
    """A command line's spec strings, unchanged, once each parses against the registered methods; the first that
    does not is an AdapterSpecError naming the flag, the spec and the problem (so a command refuses it before it
    builds a model)."""
    for text in texts:
        try:
            parse_spec(text)
        except AdapterSpecError as e:
            problem = str(e).removeprefix(f"adapter spec {text!r}: ")
            raise AdapterSpecError(f"{flag} {text}: {problem}") from None
    return texts


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


__all__ = ["Adapted", "AdapterError", "AdapterSpecError", "REGISTRY", "TARGETS", "add", "apply_spec", "build",
           "canonical", "checked_specs", "check_plain", "expand", "format_spec", "init_params", "labels", "merge", "merge_all",
           "options_of", "param_shapes", "parse_spec", "unmergeable", "unwrap", "with_config", "wrap"]
