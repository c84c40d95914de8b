"""The released ExHuBERT checkpoint's key layout (amiriparian/ExHuBERT) to and from ours.

That checkpoint holds one flat list `hubert.encoder.layers.{0..2L-1}` of stable-layer-norm layers, each ending in
`gate_bb_linear` (a Linear D->D on the layer's output, no residual), and pairs them: a = G2k(L2k(h)), then
h = G2k+1(L2k+1(a)) + a. That is our "gated" layout with one copy per layer: the even layers are the originals with
their gates, the odd ones the copies with their ZLLs. Its config.json is a stock HubertConfig whose layer count the
model overrides (to 48) when it is built, and which names the remote class; so the layer count comes from the weights.
Its config.json also says layerdrop 0.1, but its code never drops a layer (`skip_the_layer = False`): it converts with
LayerDrop off, and the report says so.
"""

from __future__ import annotations

import re

import numpy as np

from exhubert_jax.adapters import check_plain
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import EMOTION_CLASSES, HubertConfig, to_hf_config

STYLE = "gated"
GATE_KEY = re.compile(r"^(hubert\.)?encoder\.layers\.(\d+)\.gate_bb_linear\.(weight|bias)$")
LAYER_KEY = re.compile(r"^(hubert\.)?encoder\.layers\.(\d+)\.")
OURS_KEY = re.compile(r"^hubert\.encoder\.(gate|zll)\.(\d+)\.(weight|bias)$")
# config.json keys of the released model that only name its remote code (we read its layout from the weights).
REMOTE_CODE_KEYS = {"auto_map": "names the checkpoint's remote code; the layout is read from the weights instead",
                    "custom_pipelines": "names the checkpoint's remote code"}
ARCHITECTURE = "ExHuBERT"
WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}


class ReleasedLayoutError(ExhubertError, ValueError):
    """A checkpoint that looks like the released ExHuBERT but does not fit its layout."""


def is_released(state: dict) -> bool:
    """Whether a state dict has the released layout (a gate_bb_linear in the encoder layers)."""
    return any(GATE_KEY.match(k) for k in state)


def layer_count(state: dict) -> int:
    """The number of flat encoder layers in a released state dict; each needs its gate, and they come in pairs."""
    layers = sorted({int(m.group(2)) for k in state if (m := LAYER_KEY.match(k))})
    total = layers[-1] + 1 if layers else 0
    if total % 2:
        raise ReleasedLayoutError(f"released layout: {total} encoder layers, but they must come in (original, copy) "
                                  "pairs")
    prefix = "hubert." if any(k.startswith("hubert.encoder.") for k in state) else ""
    for j in range(total):
        for part in ("weight", "bias"):
            key = f"{prefix}encoder.layers.{j}.gate_bb_linear.{part}"
            if key not in state:
                raise ReleasedLayoutError(f"released layout: {key} is missing (every layer ends in a gate)")
    return total


def canonical_gate_key(key: str) -> str:
    """A released gate key in our torch naming (even layers are originals: gate; odd ones copies: zll); other keys
    pass unchanged."""
    match = GATE_KEY.match(key)
    if not match:
        return key
    j = int(match.group(2))
    return f"hubert.encoder.{'gate' if j % 2 == 0 else 'zll'}.{j}.{match.group(3)}"


def to_ours(state: dict, hf_config: dict) -> tuple[dict, dict[str, str]]:
    """(HF config dict describing our gated layout, ignored config keys with why) for a released state dict; the
    state dict's gate keys map through canonical_gate_key when it is converted."""
    total = layer_count(state)
    config = {k: v for k, v in hf_config.items() if k not in REMOTE_CODE_KEYS}
    ignored = {k: why for k, why in REMOTE_CODE_KEYS.items() if k in hf_config}
    config["exhubert_expansion"] = {"copies": 1, "style": STYLE, "original_layers": total // 2}
    if float(hf_config.get("layerdrop") or 0.0) > 0.0:
        ignored["layerdrop"] = (f"{hf_config['layerdrop']} in config.json, but the released model's code never drops "
                                "a layer (skip_the_layer = False): converted with LayerDrop off")
    config["layerdrop"] = 0.0
    classes = np.shape(state.get("classifier.weight", ()))[:1]
    if classes == (len(EMOTION_CLASSES),) and not _named_labels(hf_config):
        config["id2label"] = {str(i): name for i, name in enumerate(EMOTION_CLASSES)}
        config["num_labels"] = len(EMOTION_CLASSES)
    return config, ignored


def _named_labels(hf_config: dict) -> bool:
    """Whether a config names its classes (not transformers' LABEL_i defaults)."""
    id2label = hf_config.get("id2label") or {}
    return bool(id2label) and not all(v == f"LABEL_{k}" for k, v in id2label.items())


def check_exportable(config: HubertConfig) -> None:
    """Only the released layout itself (gated, one copy per layer, no unmerged adapters) can be written in its keys."""
    if (config.expansion_copies, config.expansion_style) != (1, STYLE):
        raise ReleasedLayoutError(
            f"--layout released needs a model expanded with style {STYLE!r} and 1 copy per layer (the released "
            f"ExHuBERT); this one has style {config.expansion_style or 'none'!r} and "
            f"{config.expansion_copies} copies")


def from_ours(state: dict, config: HubertConfig) -> tuple[dict, dict]:
    """(state dict in the released key layout, its stock HubertConfig dict) from our torch-layout state dict."""
    check_exportable(config)
    out = {}
    for key, value in state.items():
        match = OURS_KEY.match(key)
        if match:
            key = f"hubert.encoder.layers.{match.group(2)}.gate_bb_linear.{match.group(3)}"
        for ours, theirs in WEIGHT_NORM.items():
            key = key.replace(ours, theirs)
        out[key] = value
    check_plain(config)
    hf = to_hf_config(config)
    hf.pop("exhubert_expansion")
    hf["architectures"] = [ARCHITECTURE]
    return out, hf
