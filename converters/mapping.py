"""Name and layout mapping between transformers' PyTorch HuBERT state dicts and our Flax parameter pytree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from exhubert_jax.config import HubertConfig

HEAD_PREFIXES = ("projector.", "classifier.", "layer_weights")
# Source keys that we drop knowingly, with the reason reported to the user.
KNOWN_DROPS = {
    r"^lm_head\.": "CTC language-model head (not used for emotion classification)",
    r"^(hubert\.)?masked_spec_embed$": "SpecAugment embedding; this config does no time/feature masking",
    r"^(hubert\.)?encoder\.pos_conv_embed\.conv\.weight$": "redundant copy of the weight-normed conv weight",
}
# Old torch weight-norm names -> the torch>=2.1 parametrization names we use (and write).
WEIGHT_NORM_ALIASES = {
    r"\.weight_g$": ".parametrizations.weight.original0",
    r"\.weight_v$": ".parametrizations.weight.original1",
}
POS_CONV = "hubert.encoder.pos_conv_embed.conv."


class CheckpointMismatch(ValueError):
    """A checkpoint whose keys or shapes do not fit the configuration."""


@dataclass(frozen=True)
class Leaf:
    """One torch tensor <-> one slice of one Flax leaf."""

    torch_key: str
    flax_path: tuple[str, ...]
    index: tuple[int, ...]  # index into the stacked Flax leaf ((), (i,), or (i, c))
    kind: str  # "linear", "conv", "pos_v", "pos_g", "plain"


@dataclass
class ConversionReport:
    """What a conversion used, dropped and freshly initialised."""

    used: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"used {len(self.used)} tensors"]
        out += [f"dropped {k}: {why}" for k, why in sorted(self.dropped.items())]
        out += [f"freshly initialised {k}" for k in self.initialised]
        return out


def torch_layer_slots(config: HubertConfig) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """For each torch encoder layer index, the Flax subtree and index it lives at (execution order)."""
    slots = []
    for i in range(config.num_hidden_layers):
        slots.append((("hubert", "encoder", "layers"), (i,)))
        for c in range(config.expansion_copies):
            slots.append((("hubert", "encoder", "expansion", "layers"), (i, c)))
    return slots


def _torch_suffix(flax_tail: tuple[str, ...]) -> tuple[str, str]:
    """Torch name and kind for a leaf path inside a layer or module ('kernel' -> 'weight', 'scale' -> 'weight')."""
    *mods, leaf = flax_tail
    kind = "plain"
    if leaf == "kernel":
        leaf, kind = "weight", ("conv" if mods and mods[-1] == "conv" else "linear")
    elif leaf == "scale":
        leaf = "weight"
    mods = [re.sub(r"^conv_layers_(\d+)$", r"conv_layers.\1", m) for m in mods]
    return ".".join([*mods, leaf]), kind


def _flatten(tree: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, leaf) pairs of a nested dict."""
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _flatten(tree[k], (*prefix, k))
    else:
        yield prefix, tree


def leaves(config: HubertConfig, shapes: dict) -> list[Leaf]:
    """Every torch tensor of a HubertForSequenceClassification-style state dict, mapped to our pytree."""
    out: list[Leaf] = []
    layer_shapes = dict(_flatten(shapes["hubert"]["encoder"]["layers"]))
    for j, (subtree, index) in enumerate(torch_layer_slots(config)):
        for tail in layer_shapes:
            name, kind = _torch_suffix(tail)
            out.append(Leaf(f"hubert.encoder.layers.{j}.{name}", (*subtree, *tail), index, kind))
        if len(index) == 2 and config.expansion_style == "zll":
            for leaf in ("kernel", "bias"):
                out.append(Leaf(f"hubert.encoder.zll.{j}.{'weight' if leaf == 'kernel' else 'bias'}",
                                ("hubert", "encoder", "expansion", "zll", leaf), index,
                                "linear" if leaf == "kernel" else "plain"))
    for path, _ in _flatten(shapes):
        if path[:3] == ("hubert", "encoder", "layers") or path[:3] == ("hubert", "encoder", "expansion"):
            continue
        if path[-2:] == ("pos_conv_embed", "weight_v") or path[-2:] == ("pos_conv_embed", "weight_g"):
            is_v = path[-1] == "weight_v"
            key = POS_CONV + ("parametrizations.weight.original1" if is_v else "parametrizations.weight.original0")
            out.append(Leaf(key, path, (), "pos_v" if is_v else "pos_g"))
            continue
        if path[-2:] == ("pos_conv_embed", "bias"):
            out.append(Leaf(POS_CONV + "bias", path, (), "plain"))
            continue
        name, kind = _torch_suffix(path)
        out.append(Leaf(name, path, (), kind))
    return out


def _transpose(kind: str, value: np.ndarray) -> np.ndarray:
    """The layout swap between torch and Flax; each is its own inverse (Linear (out,in), Conv1d (out,in,k))."""
    if kind == "linear":
        return value.T
    if kind in ("conv", "pos_v"):
        return value.transpose(2, 1, 0)
    return value


def to_flax_array(kind: str, value: np.ndarray) -> np.ndarray:
    """Torch layout -> Flax layout for one tensor (weight-norm g: (1,1,k) -> (k,1,1))."""
    return value.reshape(-1, 1, 1) if kind == "pos_g" else _transpose(kind, value)


def to_torch_array(kind: str, value: np.ndarray) -> np.ndarray:
    """Flax layout -> torch layout for one tensor."""
    return value.reshape(1, 1, -1) if kind == "pos_g" else _transpose(kind, value)


def canonical_key(key: str) -> str:
    """Normalise a source key: old weight-norm names to parametrization names, 'hubert.' prefix on encoder keys."""
    for alias, name in WEIGHT_NORM_ALIASES.items():
        key = re.sub(alias, name, key)
    if not key.startswith(("hubert.", *HEAD_PREFIXES, "lm_head.")):
        key = "hubert." + key
    return key


def _get(tree: dict, path: tuple[str, ...]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def state_dict_to_params(state: dict[str, np.ndarray], config: HubertConfig, shapes: dict,
                         fresh: dict | None = None) -> tuple[dict, ConversionReport]:
    """Convert a torch state dict to our pytree; every key is used, dropped with a reason, or an error.

    `fresh` supplies initial values for head parameters missing from the source (e.g. a CTC checkpoint).
    """
    report = ConversionReport()
    source = {}
    for key, value in state.items():
        canon = canonical_key(key)
        if canon in source:
            raise CheckpointMismatch(f"checkpoint holds both {key!r} and an alias of it")
        source[canon] = (key, value)
    arrays = {path: np.zeros(s.shape, np.float32) for path, s in _flatten(shapes)}
    missing: list[str] = []
    for leaf in leaves(config, shapes):
        if leaf.torch_key not in source:
            missing.append(leaf.torch_key)
            continue
        orig_key, value = source.pop(leaf.torch_key)
        value = to_flax_array(leaf.kind, np.asarray(value, np.float32))
        target = arrays[leaf.flax_path]
        want = target[leaf.index].shape if leaf.index else target.shape
        if value.shape != want:
            raise CheckpointMismatch(
                f"{orig_key}: checkpoint shape {tuple(to_torch_array(leaf.kind, value).shape)} does not match the "
                f"configured shape {tuple(to_torch_array(leaf.kind, np.zeros(want)).shape)}")
        if leaf.index:
            target[leaf.index] = value
        else:
            arrays[leaf.flax_path] = value
        report.used.append(orig_key)
    head_missing = [k for k in missing if k.startswith(HEAD_PREFIXES) or k == "hubert.masked_spec_embed"]
    body_missing = [k for k in missing if k not in head_missing]
    if body_missing:
        shown = ", ".join(body_missing[:8]) + (" ..." if len(body_missing) > 8 else "")
        raise CheckpointMismatch(f"checkpoint lacks {len(body_missing)} encoder tensor(s) the config needs: {shown}")
    if head_missing:
        if fresh is None:
            raise CheckpointMismatch(f"checkpoint lacks head tensor(s) {', '.join(head_missing)}")
        for path in {leaf.flax_path for leaf in leaves(config, shapes) if leaf.torch_key in head_missing}:
            arrays[path] = np.asarray(_get(fresh, path), np.float32)
            report.initialised.append("/".join(path))
    for canon, (orig_key, value) in sorted(source.items()):
        reason = next((why for pat, why in KNOWN_DROPS.items() if re.search(pat, canon)), None)
        if reason is None:
            raise CheckpointMismatch(
                f"checkpoint tensor {orig_key!r} (shape {tuple(np.shape(value))}) has no place in this config; "
                "wrong config for this checkpoint?")
        report.dropped[orig_key] = reason
    params: dict = {}
    for path, value in arrays.items():
        _set(params, path, value)
    return params, report


def params_to_state_dict(params: dict, config: HubertConfig) -> dict[str, np.ndarray]:
    """Our pytree -> a torch-layout state dict (HubertForSequenceClassification names; ZLLs under encoder.zll)."""
    shapes = {}
    for path, value in _flatten(params):
        _set(shapes, path, np.asarray(value))
    out = {}
    for leaf in leaves(config, shapes):
        value = np.asarray(_get(shapes, leaf.flax_path), np.float32)
        if leaf.index:
            value = value[leaf.index]
        out[leaf.torch_key] = np.ascontiguousarray(to_torch_array(leaf.kind, value))
    return out
