"""The config.json of our PyTorch exports with layout Linears (model_type "exhubert", loaded through
trust_remote_code), read back as a transformers HuBERT config dict: from_pretrained reads such exports from the Hub
too. Writing it is the export's (converters.zll_export)."""

from __future__ import annotations

from exhubert_jax.errors import ExhubertError
from exhubert_jax.model import expansion_layout as spec

MODEL_TYPE = "exhubert"
LABEL_KEYS = ("id2label", "label2id")


class ExportConfigError(ExhubertError, ValueError):
    """An exhubert config.json that does not describe a model we can convert."""


def linear_positions(n_layers: int, copies: int, style: str | None) -> dict[str, list[int]]:
    """Indices into the flattened PyTorch encoder.layers of the layers followed by a Linear with a skip
    ("zll_layers") and by one without ("gate_layers"), from the layout."""
    slots = spec.linear_slots(n_layers, copies, style)
    return {"zll_layers": [s.position for s in slots if s.rule.skip],
            "gate_layers": [s.position for s in slots if not s.rule.skip]}


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
