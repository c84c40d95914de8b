"""Name and layout mapping between transformers' PyTorch HuBERT state dicts and our Flax parameter pytree.

The mapping is two declarative tables: STACKS says which stacked Flax subtrees spread over numbered PyTorch
modules (the encoder layers in execution order and the layout's Linears, all read from expansion_spec), KEY_RULES maps every other Flax path to a PyTorch key
and a layout transform. Named hooks handle the special cases: source-key aliases (`canonical_key`), tensors we
drop knowingly (KNOWN_DROPS) and head tensors a source may lack (`fresh`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from exhubert_jax.adapters.registry import owner
from exhubert_jax.errors import ExhubertError
from exhubert_jax.hub.released import canonical_gate_key
from exhubert_jax.hub.torch_io import LazyTensor
from exhubert_jax.model import expansion_layout as spec
from exhubert_jax.model.config import HubertConfig

HEAD_PREFIXES = ("projector.", "classifier.", "regressor.", "layer_weights")
# Source keys that we drop knowingly, with the reason reported to the user.
KNOWN_DROPS = {
    r"^lm_head\.": "CTC language-model head (not used for emotion classification)",
    r"^(hubert\.)?masked_spec_embed$": "SpecAugment embedding; this config does no time/feature masking",
    r"^(hubert\.)?encoder\.pos_conv_embed\.conv\.weight$": "redundant copy of the weight-normed conv weight",
}
# Source-key aliases: old torch weight-norm names -> the torch>=2.1 parametrization names we use (and write).
KEY_ALIASES = {
    r"\.weight_g$": ".parametrizations.weight.original0",
    r"\.weight_v$": ".parametrizations.weight.original1",
}


class CheckpointMismatch(ExhubertError, ValueError):
    """A checkpoint whose keys or shapes do not fit the configuration."""


# Layout transforms, Flax -> torch; each is its own inverse except weight_norm_g (see to_flax_array).
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda v: v,
    "linear": lambda v: v.T,  # Dense kernel (in, out) <-> Linear weight (out, in)
    "conv": lambda v: v.transpose(2, 1, 0),  # (k, in, out) <-> Conv1d weight (out, in, k)
    "weight_norm_g": lambda v: v.reshape(1, 1, -1),  # g over the kernel axis: (k, 1, 1) <-> (1, 1, k)
}


@dataclass(frozen=True)
class KeyRule:
    """A Flax path (regex over '/'-joined names, inside a stack if any) and its torch key template + transform.

    In the template, {m} is the regex group m (the module path) in torch naming.
    """

    flax: str
    torch: str
    transform: str


KEY_RULES = (
    KeyRule(r"(?P<m>.*pos_conv_embed)/weight_v", "{m}.conv.parametrizations.weight.original1", "conv"),
    KeyRule(r"(?P<m>.*pos_conv_embed)/weight_g", "{m}.conv.parametrizations.weight.original0", "weight_norm_g"),
    KeyRule(r"(?P<m>.*pos_conv_embed)/bias", "{m}.conv.bias", "none"),
    KeyRule(r"(?P<m>(.*/)?conv)/kernel", "{m}.weight", "conv"),
    KeyRule(r"(?P<m>.+)/kernel", "{m}.weight", "linear"),
    KeyRule(r"kernel", "weight", "linear"),  # a stacked Linear's own kernel (the ZLLs)
    KeyRule(r"(?P<m>.+)/scale", "{m}.weight", "none"),  # LayerNorm / GroupNorm scale
    KeyRule(r"(?P<m>.+)", "{m}", "none"),
)
# Flax module names -> torch module names where they differ (Flax names cannot hold a '.').
MODULE_RENAMES = ((r"conv_layers_(\d+)", r"conv_layers.\1"),)


@dataclass(frozen=True)
class Stack:
    """A stacked Flax subtree whose index ranges over numbered torch modules (hook: `slots` says which)."""

    flax: tuple[str, ...]
    torch: str  # key prefix template, {j} = the torch module number (the layer's position in execution order)
    slots: Callable[[HubertConfig], list[spec.LayerSlot]]


def _all_layers(config: HubertConfig) -> list[spec.LayerSlot]:
    return spec.layer_slots(config.num_hidden_layers, config.expansion_copies, config.expansion_style)


def _layers_in(path: tuple[str, ...]) -> Callable[[HubertConfig], list[spec.LayerSlot]]:
    """The slots whose layer parameters live at `path`."""
    return lambda cfg: [s for s in _all_layers(cfg) if s.subtree == path]


def _linears_in(path: tuple[str, ...]) -> Callable[[HubertConfig], list[spec.LayerSlot]]:
    """The slots whose output Linear lives at `path`."""
    return lambda cfg: [s for s in _all_layers(cfg) if s.linear == path]


# Torch modules of the layout's Linears, named by what they do: with a skip a ZLL, without one a gate.
LINEAR_MODULE = "hubert.encoder.{kind}.{j}"
STACKS = (
    *(Stack(path, "hubert.encoder.layers.{j}", _layers_in(path)) for path in (spec.ORIGINAL_LAYERS, spec.COPY_LAYERS)),
    *(Stack(path, LINEAR_MODULE, _linears_in(path)) for path in (spec.GATE, spec.ZLL)),
)


def linear_kind(slot: spec.LayerSlot) -> str:
    """'zll' for a slot's Linear with the skip, 'gate' without (the torch module dict it lives in)."""
    return "zll" if slot.rule.skip else "gate"


@dataclass(frozen=True)
class Leaf:
    """One torch tensor <-> one slice of one Flax leaf."""

    torch_key: str
    flax_path: tuple[str, ...]
    index: tuple[int, ...]  # index into the stacked Flax leaf ((), (i,), or (i, c))
    kind: str  # a TRANSFORMS key


@dataclass
class ConversionReport:
    """What a conversion used, dropped and freshly initialised."""

    used: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)
    ignored_config: dict[str, str] = field(default_factory=dict)  # config.json keys read but not used, with why

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"used {len(self.used)} tensors"]
        out += [f"ignored config key {k}: {why}" for k, why in sorted(self.ignored_config.items())]
        out += [f"dropped {k}: {why}" for k, why in sorted(self.dropped.items())]
        out += [f"freshly initialised {k}" for k in self.initialised]
        return out


def torch_name(flax_path: tuple[str, ...]) -> tuple[str, str]:
    """(torch key, transform) for a Flax path relative to its stack (or the root) by the first matching KEY_RULE."""
    name = "/".join(flax_path)
    for rule in KEY_RULES:
        match = re.fullmatch(rule.flax, name)
        if match:
            groups = {k: _torch_module(v) for k, v in match.groupdict().items() if v is not None}
            return rule.torch.format(**groups), rule.transform
    raise CheckpointMismatch(f"no mapping rule for parameter {name}")  # unreachable: the last rule matches all


def _torch_module(flax_module: str) -> str:
    """'a/conv_layers_0/b' -> 'a.conv_layers.0.b'."""
    parts = flax_module.split("/")
    for pattern, repl in MODULE_RENAMES:
        parts = [re.sub(f"^{pattern}$", repl, p) for p in parts]
    return ".".join(parts)


def leaves(config: HubertConfig, shapes: dict) -> list[Leaf]:
    """Every torch tensor of a HubertForSequenceClassification-style state dict, mapped to our pytree."""
    stacked: list[Leaf] = []
    plain: list[Leaf] = []
    for path in flatten_dict(shapes):
        stack = next((s for s in STACKS if path[:len(s.flax)] == s.flax), None)
        if stack is None:
            key, kind = torch_name(path)
            plain.append(Leaf(key, path, (), kind))
            continue
        key, kind = torch_name(path[len(stack.flax):])
        for slot in stack.slots(config):
            module = stack.torch.format(j=slot.position, kind=linear_kind(slot))
            stacked.append(Leaf(f"{module}.{key}", path, slot.index, kind))
    return sorted(stacked, key=lambda leaf: _layer_number(leaf.torch_key)) + plain


def _layer_number(key: str) -> int:
    """The torch module number of a stacked key (keeps the state dict in execution order)."""
    return int(re.search(r"\.(\d+)\.", key).group(1))


def to_flax_array(kind: str, value: np.ndarray) -> np.ndarray:
    """Torch layout -> Flax layout for one tensor."""
    return value.reshape(-1, 1, 1) if kind == "weight_norm_g" else TRANSFORMS[kind](value)


def to_torch_array(kind: str, value: np.ndarray) -> np.ndarray:
    """Flax layout -> torch layout for one tensor."""
    return TRANSFORMS[kind](value)


def canonical_key(key: str) -> str:
    """Hook: normalise a source key (KEY_ALIASES; 'hubert.' prefix on the keys of a bare HubertModel; the released
    ExHuBERT's gate_bb_linear names)."""
    for alias, name in KEY_ALIASES.items():
        key = re.sub(alias, name, key)
    if not key.startswith(("hubert.", *HEAD_PREFIXES, "lm_head.")):
        key = "hubert." + key
    return canonical_gate_key(key)


def _drop_reason(key: str) -> str | None:
    """Hook: why a source tensor with no place in the config may be dropped (None: it may not)."""
    return next((why for pattern, why in KNOWN_DROPS.items() if re.search(pattern, key)), None)


def _is_head(key: str) -> bool:
    """Head tensors may be missing from a source (then initialised fresh); encoder tensors may not."""
    return key.startswith(HEAD_PREFIXES) or key == "hubert.masked_spec_embed"


def fold_heads(state: dict[str, np.ndarray], config: HubertConfig) -> dict[str, np.ndarray]:
    """torch layout: the regressor's rows follow the classes in the one `classifier` Linear (so a stock
    HubertForSequenceClassification computes both; config.json's exhubert_dimensions names the last outputs)."""
    if not config.dimensions:
        return state
    out = {k: v for k, v in state.items() if not k.startswith(("classifier.", "regressor."))}
    for part in ("weight", "bias"):
        rows = [state[f"{m}.{part}"] for m in ("classifier", "regressor") if f"{m}.{part}" in state]
        out[f"classifier.{part}"] = np.concatenate(rows, axis=0)
    return out


def split_heads(state: dict[str, np.ndarray], config: HubertConfig) -> dict[str, np.ndarray]:
    """Inverse of fold_heads: the last len(config.dimensions) outputs of `classifier` become `regressor`."""
    if not config.dimensions or "classifier.weight" not in state:
        return state
    n = config.num_labels
    out = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    for part in ("weight", "bias"):
        value = np.asarray(state[f"classifier.{part}"])
        if value.shape[0] != n + len(config.dimensions):
            raise CheckpointMismatch(f"classifier.{part}: {value.shape[0]} outputs, the config has {n} classes and "
                                     f"{len(config.dimensions)} dimensions")
        if n:
            out[f"classifier.{part}"] = value[:n]
        out[f"regressor.{part}"] = value[n:]
    return out


def state_dict_to_params(state: Mapping[str, Any], config: HubertConfig, shapes: dict,
                         fresh: Callable[[list[tuple[str, ...]]], dict] | None = None) -> tuple[dict, ConversionReport]:
    """Convert a torch state dict (arrays, or LazyTensors read one at a time) to our pytree; every key is used,
    dropped with a reason, or an error. The tree is built from `shapes` and filled tensor by tensor.

    `fresh(paths)` gives initial values ({path: array}) for the head parameters missing from the source (e.g. a CTC
    checkpoint), only those.
    """
    report = ConversionReport()
    state = split_heads(state, config)
    source = {}
    for key, value in state.items():
        canon = canonical_key(key)
        if canon in source:
            raise CheckpointMismatch(f"checkpoint holds both {key!r} and an alias of it")
        source[canon] = (key, value)
    arrays = {path: np.zeros(s.shape, np.float32) for path, s in flatten_dict(shapes).items()}
    table = leaves(config, shapes)
    missing: list[Leaf] = []
    for leaf in table:
        if leaf.torch_key not in source:
            missing.append(leaf)
            continue
        orig_key, value = source.pop(leaf.torch_key)
        value = to_flax_array(leaf.kind, np.asarray(value, np.float32))
        target = arrays[leaf.flax_path]
        want = target[leaf.index].shape
        if value.shape != want:
            raise CheckpointMismatch(
                f"{orig_key}: checkpoint shape {tuple(to_torch_array(leaf.kind, value).shape)} does not match the "
                f"configured shape {tuple(to_torch_array(leaf.kind, np.zeros(want)).shape)}")
        target[leaf.index] = value
        report.used.append(orig_key)
    body_missing = [leaf.torch_key for leaf in missing if not _is_head(leaf.torch_key)]
    if body_missing:
        shown = ", ".join(body_missing[:8]) + (" ..." if len(body_missing) > 8 else "")
        raise CheckpointMismatch(f"checkpoint lacks {len(body_missing)} encoder tensor(s) the config needs: {shown}")
    if missing and fresh is None:
        raise CheckpointMismatch(f"checkpoint lacks head tensor(s) {', '.join(leaf.torch_key for leaf in missing)}")
    paths = list(dict.fromkeys(leaf.flax_path for leaf in missing))
    initial = fresh(paths) if paths else {}
    for path in paths:
        arrays[path] = np.asarray(initial[path], np.float32)
        report.initialised.append("/".join(path))
    for canon, (orig_key, value) in sorted(source.items()):
        reason = _drop_reason(canon)
        if reason is None:
            raise CheckpointMismatch(
                f"checkpoint tensor {orig_key!r} (shape {tuple(np.shape(value))}) has no place in this config; "
                "wrong config for this checkpoint?")
        report.dropped[orig_key] = reason
    return unflatten_dict(arrays), report


def refuse_unknown_leaves(params: dict, known: set[tuple[str, ...]]) -> None:
    """Raise CheckpointMismatch naming the first leaf outside `known` (the adapter-free model's paths) and the
    adapter method that owns it."""
    for path in sorted(set(flatten_dict(params)) - known):
        name = "/".join(path)
        method = owner(name)
        raise CheckpointMismatch(f"parameter {name}{f' (adapter {method!r})' if method else ''} has no place in a "
                                 "PyTorch HuBERT; merge its adapter first (exhubert_jax.adapters.merge) or drop it")


def torch_tensors(params: dict, config: HubertConfig) -> dict[str, Any]:
    """Our pytree -> a torch-layout state dict of LazyTensors, each made from its slice of `params` when read
    (HubertForSequenceClassification names; layout Linears under encoder.zll / encoder.gate), so a writer holds one
    at a time. Every leaf is checked against the config's layer stack first, and one that the adapter-free model
    lacks (an unmerged adapter's) is refused by name."""
    from exhubert_jax.adapters import param_shapes
    from exhubert_jax.pretrained import check_tree

    check_tree(params, param_shapes(config), f"export of a {config.total_layers}-layer model (style "
               f"{config.expansion_style or 'plain'}, adapters {list(config.adapters) or 'none'})")
    refuse_unknown_leaves(params, set(flatten_dict(param_shapes(config.replace(adapters=())))))
    flat = flatten_dict(params)
    state = {}
    for leaf in leaves(config, params):
        source = flat[leaf.flax_path]
        shape = to_torch_array(leaf.kind, np.empty(np.shape(source)[len(leaf.index):], np.bool_)).shape
        state[leaf.torch_key] = LazyTensor(shape, functools.partial(_torch_slice, source, leaf))
    return fold_heads(state, config)


def _torch_slice(source: Any, leaf: Leaf) -> np.ndarray:
    """One torch tensor: the leaf's slice of its (stacked) Flax array in torch layout, in the params' dtype."""
    return np.ascontiguousarray(to_torch_array(leaf.kind, np.asarray(source[leaf.index])))


def params_to_state_dict(params: dict, config: HubertConfig) -> dict[str, np.ndarray]:
    """torch_tensors, every tensor made (numpy, in the params' dtype)."""
    return {k: np.asarray(v) for k, v in torch_tensors(params, config).items()}
