"""PyTorch ExHuBERT with Zero Linear Layers: transformers' HuBERT pieces plus `hubert.encoder.zll.{j}` Linears.

Layer j of the flattened stack runs in execution order; a copy j that has a ZLL computes h + zll[j](layer_j(h)).
Load with ExpandedHubertForSequenceClassification.from_pretrained(dir); keys are checked strictly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from transformers import HubertConfig as HFHubertConfig
from transformers.models.hubert import modeling_hubert as mh

WEIGHT_NORM_KEYS = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


class StrictLoadError(ValueError):
    """A state dict whose keys do not match the model exactly."""


def zll_indices(config: HFHubertConfig) -> list[int]:
    """Flattened layer indices that carry a ZLL (the copies: j = i*(1+C)+c for c = 1..C)."""
    exp = getattr(config, "exhubert_expansion", None) or {}
    if exp.get("style") != "zll":
        return []
    copies, original = int(exp["copies"]), int(exp["original_layers"])
    if original * (1 + copies) != config.num_hidden_layers:
        raise ValueError(f"exhubert_expansion {exp} does not match num_hidden_layers {config.num_hidden_layers}")
    return [i * (1 + copies) + c for i in range(original) for c in range(1, 1 + copies)]


class ExpandedEncoder(nn.Module):
    """transformers' HuBERT encoder (either layout) with a zero-initialisable Linear + skip after each copy."""

    def __init__(self, config: HFHubertConfig, base: nn.Module):
        super().__init__()
        self.config = config
        self.pos_conv_embed, self.layer_norm, self.dropout, self.layers = (
            base.pos_conv_embed, base.layer_norm, base.dropout, base.layers)
        dim = config.hidden_size
        self.zll = nn.ModuleDict({str(j): nn.Linear(dim, dim) for j in zll_indices(config)})
        for linear in self.zll.values():
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(last hidden state, tuple of hidden states: the layer input then each layer's output)."""
        stable = self.config.do_stable_layer_norm
        if attention_mask is not None:
            hidden_states = hidden_states.masked_fill(~attention_mask.bool()[..., None], 0.0)
        mask = mh.create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states,
                                            attention_mask=attention_mask)
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states)
        if not stable:
            hidden_states = self.layer_norm(hidden_states)
        hidden_states = self.dropout(hidden_states)
        states = [hidden_states]
        for j, layer in enumerate(self.layers):
            if self.training and self.config.layerdrop > 0.0 and torch.rand([]) < self.config.layerdrop:
                states.append(hidden_states)
                continue
            out = layer(hidden_states, attention_mask=mask)
            key = str(j)
            hidden_states = hidden_states + self.zll[key](out) if key in self.zll else out
            states.append(hidden_states)
        if stable:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, tuple(states)


class ExpandedHubertForSequenceClassification(nn.Module):
    """HubertForSequenceClassification semantics (masking, weighted layer sum, projector, masked mean, classifier)."""

    def __init__(self, config: HFHubertConfig):
        super().__init__()
        self.config = config
        self.hubert = mh.HubertModel(config)
        self.hubert.encoder = ExpandedEncoder(config, self.hubert.encoder)
        if config.use_weighted_layer_sum:
            n = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(n) / n)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> dict:
        """{"logits", "hidden_states" (tuple or None)}."""
        hubert = self.hubert
        features = hubert.feature_extractor(input_values).transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = hubert._get_feature_vector_attention_mask(features.shape[1], attention_mask)
        hidden = hubert.feature_projection(features)
        hidden = hubert._mask_hidden_states(hidden)
        last, states = hubert.encoder(hidden, frame_mask)
        if self.config.use_weighted_layer_sum:
            weights = nn.functional.softmax(self.layer_weights, dim=-1)
            last = (torch.stack(states, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)
        h = self.projector(last)
        if frame_mask is None:
            pooled = h.mean(dim=1)
        else:
            m = frame_mask[..., None].to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1)
        return {"logits": self.classifier(pooled), "hidden_states": states if output_hidden_states else None}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json + model.safetensors."""
        from safetensors.torch import save_file
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__]
        with open(directory / "config.json", "w") as f:
            json.dump(config, f, indent=2)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ExpandedHubertForSequenceClassification":
        """Load config.json + model.safetensors; missing or unexpected keys are an error naming them."""
        from safetensors.torch import load_file
        directory = Path(directory)
        with open(directory / "config.json") as f:
            config = HFHubertConfig(**json.load(f))
        model = cls(config)
        model.load_strict(load_file(str(directory / "model.safetensors")))
        return model.eval()

    def load_strict(self, state: dict[str, torch.Tensor]) -> None:
        """load_state_dict after normalising weight-norm names; any key mismatch raises StrictLoadError."""
        state = {canonical_key(k): v for k, v in state.items()}
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise StrictLoadError(f"state dict does not match {type(self).__name__}: missing keys {missing}, "
                                  f"unexpected keys {unexpected}")
        self.load_state_dict(state, strict=True)


def canonical_key(key: str) -> str:
    """Old-style weight-norm names (weight_g/weight_v) -> torch parametrization names."""
    for old, new in WEIGHT_NORM_KEYS.items():
        if key.endswith(f"pos_conv_embed.conv.{old}"):
            return key[: -len(old)] + new
    return key
