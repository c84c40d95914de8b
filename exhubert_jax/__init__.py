"""exhubert-jax: ExHuBERT (HuBERT + Backbone Block Expansion) for speech emotion recognition in JAX/Flax."""

from .checkpoint import from_pretrained, save_pretrained
from .config import HubertConfig, from_hf_config, preset, to_hf_config
from .model import (EncoderOutput, HubertForSequenceClassification, HubertModel, HubertOutput, init_params,
                    param_shapes)
from . import adapters  # noqa: E402,F401 - its modules register the built-in adapter methods

__all__ = [
    "EncoderOutput", "HubertConfig", "HubertForSequenceClassification", "HubertModel", "HubertOutput",
    "from_hf_config", "from_pretrained", "init_params", "param_shapes", "preset", "save_pretrained", "to_hf_config",
]
