"""transformers config for ExHuBERT with layout Linears (model_type "exhubert"); copied into exports as is.

The HuBERT fields sit under `encoder`, not at the top level, so transformers' plain HuBERT classes cannot read
them: HubertForSequenceClassification.from_pretrained on an ExHuBERT export builds a default-sized HuBERT and
fails on the mismatched tensor shapes instead of silently computing other logits.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import HubertConfig, PreTrainedConfig


@strict
class ExHubertConfig(PreTrainedConfig):
    """A HuBERT encoder config (`encoder`), the flattened-stack layers followed by a Linear with a skip (ZLL) or
    without one (gate), and the expansion recipe."""

    model_type = "exhubert"

    encoder: dict | None = None  # transformers HubertConfig fields of the flattened (expanded) encoder + head
    zll_layers: list[int] | None = None  # encoder.layers indices followed by a Linear with a skip connection
    gate_layers: list[int] | None = None  # encoder.layers indices followed by a Linear without one
    expansion: dict | None = None  # {"copies", "style", "original_layers"}: how the stack was expanded

    def validate_architecture(self):
        """Linear indices must name encoder layers, each at most once."""
        n = self.hubert_config().num_hidden_layers
        listed = [int(j) for j in (*(self.zll_layers or ()), *(self.gate_layers or ()))]
        bad = [j for j in listed if not 0 <= j < n]
        if bad:
            raise ValueError(f"zll_layers/gate_layers {bad} are outside the {n} encoder layers")
        if len(set(listed)) != len(listed):
            raise ValueError(f"a layer is listed twice in zll_layers {self.zll_layers} / gate_layers {self.gate_layers}")

    def original_layers(self) -> list[int]:
        """encoder.layers indices of the original (pre-expansion) layers: the first of each group."""
        n = self.hubert_config().num_hidden_layers
        group = 1 + int((self.expansion or {}).get("copies", 0))
        return list(range(0, n, group))

    def hubert_config(self) -> HubertConfig:
        """The transformers HubertConfig the encoder and head modules are built from."""
        return HubertConfig(**(self.encoder or {}), id2label=self.id2label, label2id=self.label2id)
