"""Tiny random transformers HuBERT models saved locally: the numerical oracle for our tests (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import HubertConfig as HFConfig
from transformers import HubertForCTC, HubertForSequenceClassification, HubertModel

LAYOUTS = {
    # large-like: layer-norm feature encoder with conv bias, stable (pre-) layer norm encoder
    "large": dict(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True),
    # base-like: group norm on the first conv only, no conv bias, post layer norm encoder
    "base": dict(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False),
}
HEADS = {"seqcls": HubertForSequenceClassification, "model": HubertModel, "ctc": HubertForCTC}


def tiny_hf_config(layout: str = "large", **overrides) -> HFConfig:
    """A small HuBERT config with every structural feature of the real ones."""
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                  conv_dim=(16, 16, 24), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 2), num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=4, classifier_proj_size=8, num_labels=6, vocab_size=12,
                  **LAYOUTS[layout])
    kwargs.update(overrides)
    return HFConfig(**kwargs)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial random values (LayerNorm scales, biases, head) so no mapping error hides."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * 0.2
            p.copy_(1.0 + noise if name.endswith("layer_norm.weight") else p + noise)
    return model.eval()


def save_tiny(path: Path, layout: str = "large", head: str = "seqcls", seed: int = 0, safe: bool = True,
              **overrides) -> torch.nn.Module:
    """Build, randomise and save a tiny HF model; returns the torch model."""
    torch.manual_seed(seed)
    model = randomize_(HEADS[head](tiny_hf_config(layout, **overrides)), seed)
    model.save_pretrained(path, safe_serialization=safe)
    return model


WEIGHT_NORM_NEW_TO_OLD = {"parametrizations.weight.original0": "weight_g",
                          "parametrizations.weight.original1": "weight_v"}


def rename_keys(state: dict, renames: dict[str, str]) -> dict:
    """A state dict with each key's substrings replaced by `renames` (e.g. weight-norm names old <-> new)."""
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def padded_batch(lengths=(4000, 3100, 2207), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random audio of different lengths, zero-padded, with its attention mask."""
    rng = np.random.default_rng(seed)
    total = max(lengths)
    x = np.zeros((len(lengths), total), np.float32)
    mask = np.zeros((len(lengths), total), np.int64)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.standard_normal(n)
        mask[i, :n] = 1
    return x, mask


def torch_forward(model: torch.nn.Module, x: np.ndarray, mask: np.ndarray | None):
    """(logits or last hidden state, stacked hidden states) from a torch HuBERT."""
    with torch.no_grad():
        out = model(torch.from_numpy(x), attention_mask=None if mask is None else torch.from_numpy(mask),
                    output_hidden_states=True)
    main = out.logits if hasattr(out, "logits") else out.last_hidden_state
    return main.numpy(), np.stack([h.numpy() for h in out.hidden_states])
