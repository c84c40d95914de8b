"""The config.json of an export with layout Linears (model_type "exhubert", loaded through trust_remote_code) and the
PyTorch code that goes with it; reading such a config.json back is exhubert_jax.hub.exhubert_config's."""

from __future__ import annotations

import shutil
from pathlib import Path

from exhubert_jax.adapters import check_plain
from exhubert_jax.hub.exhubert_config import (  # noqa: F401 - kept here
    LABEL_KEYS,
    MODEL_TYPE,
    ExportConfigError,
    hubert_config_dict,
    linear_positions,
)
from exhubert_jax.model import expansion_layout as spec
from exhubert_jax.model.config import HubertConfig, to_hf_config

ARCHITECTURE = "ExHubertForSequenceClassification"
# Self-contained PyTorch code copied into each export; auto_map points transformers' Auto classes at it.
CODE_FILES = ("configuration_exhubert.py", "modeling_exhubert.py")
AUTO_MAP = {"AutoConfig": "configuration_exhubert.ExHubertConfig",
            "AutoModelForAudioClassification": f"modeling_exhubert.{ARCHITECTURE}"}


def has_linears(config: HubertConfig) -> bool:
    """Whether the config's layout puts Linears after layers (then plain transformers HuBERT cannot hold it)."""
    return bool(spec.linear_slots(1, config.expansion_copies, config.expansion_style))


def export_config(config: HubertConfig) -> dict:
    """config.json for a model with layout Linears: HuBERT fields nested under `encoder`, the layers followed by a
    Linear listed, auto_map to our code."""
    check_plain(config)
    encoder = to_hf_config(config)
    expansion = encoder.pop("exhubert_expansion")
    labels = {k: encoder.pop(k) for k in LABEL_KEYS}
    for key in ("model_type", "num_labels"):
        encoder.pop(key)
    positions = linear_positions(config.num_hidden_layers, config.expansion_copies, config.expansion_style)
    return {"model_type": MODEL_TYPE, "architectures": [ARCHITECTURE], "auto_map": AUTO_MAP, "encoder": encoder,
            **positions, "expansion": expansion, **labels}


def copy_code(out: Path) -> None:
    """Copy the PyTorch configuration and modeling files next to the weights."""
    here = Path(__file__).parent
    for name in CODE_FILES:
        shutil.copyfile(here / name, out / name)
