"""transformers config for ExHuBERT with Zero Linear Layers (model_type "exhubert"); copied into exports as is.

The HuBERT fields sit under `encoder`, not at the top level, so transformers' plain HuBERT classes cannot read
them: HubertForSequenceClassification.from_pretrained on an ExHuBERT export builds a default-sized HuBERT and
fails on the mismatched tensor shapes instead of silently computing other logits.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import HubertConfig, PreTrainedConfig


@strict
class ExHubertConfig(PreTrainedConfig):
    """A HuBERT encoder config (`encoder`), the flattened-stack layers that carry a ZLL, and the expansion recipe."""

    model_type = "exhubert"

    encoder: dict | None = None  # transformers HubertConfig fields of the flattened (expanded) encoder + head
    zll_layers: list[int] | None = None  # encoder.layers indices followed by a zero Linear with a skip connection
    expansion: dict | None = None  # {"copies", "style", "original_layers"}: how the stack was expanded

    def validate_architecture(self):
        """ZLL indices must name encoder layers."""
        n = self.hubert_config().num_hidden_layers
        bad = [j for j in self.zll_layers or () if not 0 <= int(j) < n]
        if bad:
            raise ValueError(f"zll_layers {bad} are outside the {n} encoder layers")

    def hubert_config(self) -> HubertConfig:
        """The transformers HubertConfig the encoder and head modules are built from."""
        return HubertConfig(**(self.encoder or {}), id2label=self.id2label, label2id=self.label2id)
