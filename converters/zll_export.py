"""The config.json of an export with layout Linears (model_type "exhubert", loaded through trust_remote_code) and back."""

from __future__ import annotations

import shutil
from pathlib import Path

from exhubert_jax.adapters import check_plain
from exhubert_jax.errors import ExhubertError
from exhubert_jax.model import expansion_layout as spec
from exhubert_jax.model.config import HubertConfig, to_hf_config

MODEL_TYPE = "exhubert"
ARCHITECTURE = "ExHubertForSequenceClassification"
# Self-contained PyTorch code copied into each export; auto_map points transformers' Auto classes at it.
CODE_FILES = ("configuration_exhubert.py", "modeling_exhubert.py")
AUTO_MAP = {"AutoConfig": "configuration_exhubert.ExHubertConfig",
            "AutoModelForAudioClassification": f"modeling_exhubert.{ARCHITECTURE}"}
LABEL_KEYS = ("id2label", "label2id")


class ExportConfigError(ExhubertError, ValueError):
    """An exhubert config.json that does not describe a model we can convert."""


def linear_positions(n_layers: int, copies: int, style: str | None) -> dict[str, list[int]]:
    """Indices into the flattened PyTorch encoder.layers of the layers followed by a Linear with a skip
    ("zll_layers") and by one without ("gate_layers"), from the layout."""
    slots = spec.linear_slots(n_layers, copies, style)
    return {"zll_layers": [s.position for s in slots if s.rule.skip],
            "gate_layers": [s.position for s in slots if not s.rule.skip]}


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


def hubert_config_dict(data: dict, where: str = "config.json") -> dict:
    """The transformers HuBERT config dict (with exhubert_expansion) that an exhubert config.json describes."""
    missing = [k for k in ("encoder", "zll_layers", "expansion") if data.get(k) is None]
    if missing:
        raise ExportConfigError(f"{where}: model_type {MODEL_TYPE!r} but no {', '.join(missing)}")
    expansion = data["expansion"]
    layers = int(expansion["original_layers"]) * (1 + int(expansion["copies"]))
    if data["encoder"].get("num_hidden_layers") != layers:
        raise ExportConfigError(f"{where}: encoder.num_hidden_layers {data['encoder'].get('num_hidden_layers')} does "
                                f"not match expansion {expansion} ({layers} layers)")
    out = {**data["encoder"], **{k: data[k] for k in LABEL_KEYS if data.get(k)}, "exhubert_expansion": expansion}
    want = linear_positions(int(expansion["original_layers"]), int(expansion["copies"]), expansion["style"])
    for key, positions in want.items():
        if list(data.get(key) or []) != positions:
            raise ExportConfigError(f"{where}: {key} {data.get(key)} is not the layout of expansion {expansion} "
                                    f"(expected {positions})")
    return out
