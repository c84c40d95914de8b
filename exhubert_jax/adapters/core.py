"""The adapter protocol: how a method's parameters are added, how labels compose, and how methods merge.

A method is an adapter_spec.Method in adapter_spec.REGISTRY (see there). `add` (one function for every method but
bbe, which brings its own) appends the method's canonical spec to the config, lets the model
declare the new leaves (param_shapes of the new config) and initialises only those, so the inputs are never mutated
and every existing leaf keeps its value.

Labels compose in the order the adapters were applied: the head trains; a method's own leaves train; leaves added
by earlier methods keep their label; every other (backbone) leaf is frozen unless the method trains it (BitFit's
biases). BBE, which must come first, sets the starting labels (original layers frozen, or nothing frozen).
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from exhubert_jax.adapters.registry import REGISTRY, AdapterSpecError, format_spec, lookup, normalise, owner, parse_spec
from exhubert_jax.adapters.registry import Method, register  # noqa: F401 - re-exported for the method modules
from exhubert_jax.adapters.wrapper import param_shapes
from exhubert_jax.model.config import ConfigError, HubertConfig
from exhubert_jax.model.param_labels import FROZEN, TRAINABLE, param_labels, path_str

HEAD = re.compile(r"^(projector|classifier|regressor)/|^layer_weights$")
CNN = "hubert/feature_extractor/"


class AdapterError(AdapterSpecError):
    """An adapter request that cannot be honoured (bad order, repeated method, mismatched parameters)."""


def leaf_regex(pattern: str) -> Callable[[str], bool]:
    """A path predicate from a regex."""
    compiled = re.compile(pattern)
    return lambda name: bool(compiled.search(name))


def with_adapter(config: HubertConfig, method: str, options: dict[str, Any]) -> HubertConfig:
    """`config` with the canonical spec of `method` appended; a method may appear once."""
    applied = [s.partition(":")[0] for s in config.adapters]
    if method in applied:
        raise AdapterError(f"the model already has a {method!r} adapter ({list(config.adapters)}); "
                           "merge it first or apply another method")
    return config.replace(adapters=(*config.adapters, format_spec(method, options)))


def _leaf_key(seed: int, name: str) -> jax.Array:
    """A key for one new leaf, fixed by the seed and the leaf's path (order-independent)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def add(params: Any, config: HubertConfig, method: str, *, seed: int = 0,
        **options: Any) -> tuple[dict, HubertConfig, dict]:
    """Add a structural or label-only method: (new_params, new_config, labels); inputs are never mutated."""
    spec = lookup(method)
    new_config = with_adapter(config, method, normalise(method, options))
    params = jax.tree.map(jnp.asarray, params)  # new containers; numpy inputs are copied, never aliased
    old = {path_str(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
    shapes = param_shapes(new_config)
    missing = sorted(set(old) - {path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(shapes)})
    if missing:
        raise AdapterError(f"parameters {', '.join(missing[:4])} do not belong to the config being adapted")

    def leaf(path, shape):
        name = path_str(path)
        if name in old:
            if tuple(old[name].shape) != tuple(shape.shape):
                raise AdapterError(f"parameter {name} has shape {tuple(old[name].shape)}, the config expects "
                                   f"{tuple(shape.shape)}")
            return old[name]
        if spec.init_leaf is None or not spec.owns(name):
            raise AdapterError(f"adapter {method!r} cannot initialise parameter {name}")
        return spec.init_leaf(name, tuple(shape.shape), shape.dtype, _leaf_key(seed, name), old)

    new_params = jax.tree_util.tree_map_with_path(leaf, shapes)
    return new_params, new_config, labels(new_params, new_config)


def applied(config: HubertConfig) -> list[tuple[str, dict]]:
    """(method, options) of every adapter recorded in the config, in order."""
    return [parse_spec(s) for s in config.adapters]


def is_adapter_leaf(name: str) -> bool:
    """Whether a parameter path belongs to any adapter method."""
    return owner(name) is not None


def labels(params: Any, config: HubertConfig, freeze: str = "original") -> dict:
    """'trainable'/'frozen' for every leaf, from the adapters recorded in the config (see the module docstring).

    `freeze` applies to models without a recorded bbe adapter (plain, or expanded before adapters were recorded),
    exactly as optim.param_labels; a recorded bbe brings its own.
    """
    methods = applied(config)
    bbe = dict(methods).get("bbe")
    base = param_labels(params, config, bbe["freeze"] if bbe else freeze)
    steps = [REGISTRY[m] for m, _ in methods if m != "bbe"]
    unknown = [m for m, _ in methods if m not in REGISTRY]
    if unknown:
        raise AdapterError(f"adapter method(s) {', '.join(unknown)} are not registered")

    def label(path, current):
        name = path_str(path)
        for method in steps:
            if HEAD.search(name) or method.owns(name):
                current = TRAINABLE
            elif is_adapter_leaf(name):
                continue
            elif method.trains(name) and not name.startswith(CNN):
                current = TRAINABLE
            else:
                current = FROZEN
        return current

    return jax.tree_util.tree_map_with_path(label, base)


def map_dense(params: dict, fn: Callable[[dict], dict]) -> dict:
    """Apply fn to every Dense node ({'kernel', 'bias', ...}) of the encoder layers and copies; new containers."""
    def walk(node):
        if not isinstance(node, dict):
            return node
        if "kernel" in node and "bias" in node:
            return fn(dict(node))
        return {k: walk(v) for k, v in node.items()}

    encoder = params["hubert"]["encoder"]
    new_encoder = {**encoder, "layers": walk(encoder["layers"])}
    if "expansion" in encoder:
        new_encoder["expansion"] = {**encoder["expansion"], "layers": walk(encoder["expansion"]["layers"])}
    return {**params, "hubert": {**params["hubert"], "encoder": new_encoder}}


def merge(params: Any, config: HubertConfig) -> tuple[dict, HubertConfig]:
    """Fold every mergeable adapter into the base weights: (params, config) without them; others stay as they are.

    Methods fold by their `order`, nearest the module first: LoRA before IA3, as the Dense computes
    (x W + b + s x A B) * l.
    """
    params = jax.tree.map(jnp.asarray, params)
    methods = applied(config)
    for method, options in sorted((mo for mo in methods if REGISTRY[mo[0]].merge is not None),
                                  key=lambda mo: REGISTRY[mo[0]].order):
        params = REGISTRY[method].merge(params, options)
    keep = tuple(spec for spec, (method, _) in zip(config.adapters, methods) if REGISTRY[method].merge is None)
    return params, config.replace(adapters=keep)


def unmergeable(config: HubertConfig) -> list[str]:
    """The config's adapter specs that do not fold into the base weights (bbe, the layer layout itself, aside)."""
    return [spec for spec, (method, _) in zip(config.adapters, applied(config))
            if method != "bbe" and REGISTRY[method].merge is None]


def merge_all(params: Any, config: HubertConfig) -> tuple[dict, HubertConfig, list[str]]:
    """merge, refusing a model whose adapters do not all fold in: (params, config, the specs folded in)."""
    left = unmergeable(config)
    if left:
        raise AdapterError(f"adapter(s) {', '.join(left)} cannot be merged: they add layers that no base weight can "
                           "hold (lora, ia3 and bitfit merge)")
    merged, merged_config = merge(params, config)
    return merged, merged_config, [s for s in config.adapters if s not in merged_config.adapters]


def check_plain(config: HubertConfig) -> None:
    """Refuse a config holding adapters that change the computation (registry.Method.structural): plain HuBERT, as
    exported, lacks them until they are merged."""
    unmerged = [s for s in config.adapters if lookup(s.partition(":")[0]).structural]
    if unmerged:
        raise ConfigError(f"the model has unmerged adapters ({', '.join(unmerged)}) that plain HuBERT lacks: fold "
                          "them in with `python -m converters.flax_to_torch SRC OUT --merge` (exhubert_jax.adapters."
                          "merge in Python), or export LoRA for peft with --peft")
