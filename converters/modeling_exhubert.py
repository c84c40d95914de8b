"""PyTorch ExHuBERT: transformers' HuBERT pieces plus Linears after layers, `hubert.encoder.{zll,gate}.{j}`.

Self-contained (imports only torch and transformers): exports copy this file and configuration_exhubert.py next
to the weights, so `AutoModelForAudioClassification.from_pretrained(dir, trust_remote_code=True)` loads it.
Layer j of the flattened stack runs in execution order; a layer j listed in config.zll_layers computes
h + zll[j](layer_j(h)) (ExHuBERT, Sec. 3.2: a zero-initialised Linear with a skip connection after each copy), one
listed in config.gate_layers computes gate[j](layer_j(h)) (the released ExHuBERT's Linear after each original).
The authors' methods are here with their meaning: freeze_og_encoder, freeze_feature_encoder, freeze_base_model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.hubert import modeling_hubert as mh

from .configuration_exhubert import ExHubertConfig


class StrictLoadError(ValueError):
    """Weights whose keys do not match the model exactly."""


class ZeroLinear(nn.Linear):
    """A Linear D->D initialised to zero (weight and bias), so its layer starts as the identity."""

    def reset_parameters(self) -> None:
        """Zero weight and bias; marked initialised so the enclosing HubertModel's weight init leaves them zero."""
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self._is_hf_initialized = True


class IdentityLinear(nn.Linear):
    """A Linear D->D initialised to the identity (weight I, bias zero), so its layer starts unchanged."""

    def reset_parameters(self) -> None:
        """Identity weight, zero bias; marked initialised so HubertModel's weight init leaves them."""
        with torch.no_grad():
            self.weight.copy_(torch.eye(self.out_features, self.in_features))
            nn.init.zeros_(self.bias)
        self._is_hf_initialized = True


class ExHubertEncoder(nn.Module):
    """transformers' HuBERT encoder (either layout) with a ZeroLinear + skip after each layer in zll_layers and an
    IdentityLinear after each layer in gate_layers."""

    def __init__(self, config: mh.HubertConfig, zll_layers: list[int], gate_layers: list[int], base: nn.Module):
        super().__init__()
        self.config = config
        self.pos_conv_embed, self.layer_norm, self.dropout, self.layers = (
            base.pos_conv_embed, base.layer_norm, base.dropout, base.layers)
        dim = config.hidden_size
        self.zll = nn.ModuleDict({str(j): ZeroLinear(dim, dim) for j in zll_layers})
        self.gate = nn.ModuleDict({str(j): IdentityLinear(dim, dim) for j in gate_layers})

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
            if key in self.gate:
                out = self.gate[key](out)
            hidden_states = hidden_states + self.zll[key](out) if key in self.zll else out
            states.append(hidden_states)
        if stable:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, tuple(states)


class ExHubertForSequenceClassification(mh.HubertPreTrainedModel):
    """HubertForSequenceClassification semantics (masking, weighted layer sum, projector, masked mean, classifier)."""

    config_class = ExHubertConfig

    def __init__(self, config: ExHubertConfig):
        super().__init__(config)
        hubert_config = config.hubert_config()
        self.hubert = mh.HubertModel(hubert_config)
        self.hubert.encoder = ExHubertEncoder(hubert_config, config.zll_layers or [], config.gate_layers or [],
                                              self.hubert.encoder)
        if hubert_config.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(hubert_config.num_hidden_layers + 1))
        self.projector = nn.Linear(hubert_config.hidden_size, hubert_config.classifier_proj_size)
        self.classifier = nn.Linear(hubert_config.classifier_proj_size, hubert_config.num_labels)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """HuBERT's initialisation, with uniform layer weights (ZeroLinear initialises itself)."""
        if isinstance(module, ExHubertForSequenceClassification):
            if hasattr(module, "layer_weights"):
                init.constant_(module.layer_weights, 1.0 / module.layer_weights.numel())
        else:
            super()._init_weights(module)

    def freeze_feature_encoder(self) -> None:
        """No gradients for the CNN feature encoder (frozen throughout in the paper)."""
        self.hubert.feature_extractor._freeze_parameters()

    def freeze_base_model(self) -> None:
        """No gradients for anything but the head (projector, classifier and layer weights)."""
        for param in self.hubert.parameters():
            param.requires_grad = False

    def freeze_og_encoder(self) -> None:
        """No gradients for the original layers and the Linears after them (the authors' freeze_og_encoder)."""
        for j in self.config.original_layers():
            modules = [self.hubert.encoder.layers[j]]
            if str(j) in self.hubert.encoder.gate:
                modules.append(self.hubert.encoder.gate[str(j)])
            for module in modules:
                for param in module.parameters():
                    param.requires_grad = False

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' from_pretrained, but missing, unexpected or mis-shaped weights are an error naming them."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        problems = {k: sorted(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
        if problems:
            raise StrictLoadError(f"weights do not match {cls.__name__}: {problems}")
        return (model, info) if want_info else model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        """Logits (and cross-entropy loss when labels are given); hidden states on request."""
        hubert = self.hubert
        features = hubert.feature_extractor(input_values).transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = hubert._get_feature_vector_attention_mask(features.shape[1], attention_mask)
        hidden = hubert.feature_projection(features)
        hidden = hubert._mask_hidden_states(hidden)
        last, states = hubert.encoder(hidden, frame_mask)
        if hasattr(self, "layer_weights"):
            weights = nn.functional.softmax(self.layer_weights, dim=-1)
            last = (torch.stack(states, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)
        h = self.projector(last)
        if frame_mask is None:
            pooled = h.mean(dim=1)
        else:
            m = frame_mask[..., None].to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1)
        logits = self.classifier(pooled)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        hidden_states = states if output_hidden_states else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
