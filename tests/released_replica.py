"""A PyTorch replica of the released ExHuBERT (amiriparian/ExHuBERT), built from transformers' HuBERT modules.

It follows the structure the checkpoint's public remote code describes, written here from that description:
one flat list of stable-layer-norm layers, each ending in `gate_bb_linear` (a Linear D->D on the layer's output,
no residual); a = G2k(L2k(h)), then h = G2k+1(L2k+1(a)) + a; the final encoder LayerNorm; then `projector`,
a mean over frames (masked when a mask is given) and `classifier`. Weight norm is saved as weight_g/weight_v, as
in the released file. It is the numerical oracle for the released-layout converter tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import HubertConfig as HFConfig
from transformers.models.hubert import modeling_hubert as mh

from hf_models import WEIGHT_NORM_NEW_TO_OLD, randomize_, rename_keys, tiny_hf_config


class ReleasedReplica(nn.Module):
    """The released layout: HuBERT pieces, a gate after every layer, pairs with a skip, projector, mean, classifier."""

    def __init__(self, config: HFConfig):
        super().__init__()
        self.config = config
        self.hubert = mh.HubertModel(config)
        dim = config.hidden_size
        for layer in self.hubert.encoder.layers:
            layer.gate_bb_linear = nn.Linear(dim, dim)
        self.projector = nn.Linear(dim, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """(last hidden state after the final LayerNorm, frame mask or None)."""
        hubert, encoder = self.hubert, self.hubert.encoder
        features = hubert.feature_extractor(input_values).transpose(1, 2)
        frames = None
        if attention_mask is not None:
            frames = hubert._get_feature_vector_attention_mask(features.shape[1], attention_mask)
        h = hubert.feature_projection(features)
        if frames is not None:
            h = h.masked_fill(~frames[..., None], 0.0)
        mask = mh.create_bidirectional_mask(config=self.config, inputs_embeds=h, attention_mask=frames)
        h = encoder.dropout(h + encoder.pos_conv_embed(h))
        remembered = None
        for j, layer in enumerate(encoder.layers):
            out = layer.gate_bb_linear(layer(h, attention_mask=mask))
            if j % 2 == 0:
                h = remembered = out
            else:
                h = out + remembered
        return encoder.layer_norm(h), frames

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The logits."""
        h, frames = self.encode(input_values, attention_mask)
        h = self.projector(h)
        if frames is None:
            pooled = h.mean(dim=1)
        else:
            m = frames[..., None].to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1)
        return self.classifier(pooled)

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under the released file's names (weight norm as weight_g / weight_v)."""
        return rename_keys({k: v.detach().clone() for k, v in self.state_dict().items()}, WEIGHT_NORM_NEW_TO_OLD)


def build_replica(original_layers: int = 2, seed: int = 0, **overrides) -> ReleasedReplica:
    """A tiny replica with 2 * original_layers layers and random weights everywhere, gates included."""
    torch.manual_seed(seed)
    kw = dict(layerdrop=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
    config = tiny_hf_config("large", num_hidden_layers=2 * original_layers, **{**kw, **overrides})
    return randomize_(ReleasedReplica(config), seed)


def save_released(model: ReleasedReplica, path: Path, safe: bool = False) -> Path:
    """Write the replica as the released checkpoint is laid out: a stock config.json naming the remote class, and
    pytorch_model.bin (or model.safetensors) with the released keys."""
    path.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.update(architectures=["ExHuBERT"], auto_map={"AutoModel": "ExHuBERT_model.ExHuBERT"})
    config["num_hidden_layers"] = model.config.num_hidden_layers // 2  # the remote model overrides it when built
    (path / "config.json").write_text(json.dumps(config, indent=2))
    state = model.released_state_dict()
    if safe:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path
