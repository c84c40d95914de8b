"""Export an exhubert-jax model to a PyTorch Hugging Face directory: transformers' HuBERT layout, our self-contained
ExHuBERT code for layouts with Linears after layers, or the released ExHuBERT's keys; with the feature extractor of
the input protocol the model was trained with and a model card (converters.model_card). The weights are written
tensor by tensor, each made from the parameters as it is written. The command line is converters.flax_to_torch."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from exhubert_jax.adapters import check_plain
from exhubert_jax.data.loading.input_protocol import feature_extractor_config
from exhubert_jax.errors import ExhubertError
from exhubert_jax.hub import released
from exhubert_jax.hub.mapping import torch_tensors
from exhubert_jax.hub.torch_io import SourceError, open_safetensors, tensor_bytes, write_safetensors
from exhubert_jax.model.config import HubertConfig, to_hf_config
from exhubert_jax.process.atomic_files import atomic_directory
from exhubert_jax.process.run_folders import read_run

from . import model_card
from .zll_export import copy_code, export_config, has_linears


LAYOUTS = ("ours", "released")
PREPROCESSOR_CONFIG = "preprocessor_config.json"
WEIGHTS = "model.safetensors"


class ExportCheckError(ExhubertError, ValueError):
    """An export whose files, read back, are not what was written."""


def export(params: dict, config: HubertConfig, out: str | Path, layout: str = "ours", *,
           source: str | Path | None = None, input_mode: str = "masked", license: str | None = None,
           where: str | None = None) -> Path:
    """Write config.json + model.safetensors + preprocessor_config.json (the feature extractor of `input_mode`)
    + README.md (the model card; `license` in its front matter, `where` the place its code loads the model from,
    default `out`) (+ the PyTorch code for models with layout Linears); returns the directory. layout="released"
    writes the released ExHuBERT's keys and stock config instead. The folder appears whole or not at all (an older
    one stays until the new one is complete; a full disk is one DiskFullError naming `out` and the bytes it needs);
    `source`, the checkpoint read, is never overwritten."""
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    check_plain(config)  # from the config alone, before any weight is read
    state = torch_tensors(jax.tree.map(np.asarray, params), config)
    if config.mask_time_prob == 0 and config.mask_feature_prob == 0:
        state.pop("hubert.masked_spec_embed", None)
    state, hf, code = _layout_files(state, config, layout)
    extractor = feature_extractor_config(input_mode)
    card = model_card.Card("released" if layout == "released" else "transformers", config, input_mode,
                           where or str(out), Path(source) if source else None, license, remote_code=code)
    with atomic_directory(out, *([source] if source else []), needed=tensor_bytes(state)) as tmp:
        if code:
            copy_code(tmp)
        write_safetensors(state, tmp / WEIGHTS)
        with open(tmp / "config.json", "w") as f:
            json.dump(hf, f, indent=2)
        with open(tmp / PREPROCESSOR_CONFIG, "w") as f:
            json.dump(extractor, f, indent=2)
        model_card.write(tmp, card)
    return Path(out)


def verify(out: str | Path) -> int:
    """Read a written export back: every .safetensors file's header against its size, every .json file, the card's
    front matter; returns the number of tensors. An ExportCheckError names the first file that is not right."""
    import yaml

    out, tensors = Path(out), 0
    for path in sorted(out.rglob("*")):
        try:
            if path.suffix == ".safetensors":
                tensors += len(open_safetensors(path))
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.name == model_card.CARD:
                text = path.read_text(encoding="utf-8")
                if not text.startswith("---\n") or not isinstance(yaml.safe_load(text.split("---\n")[1]), dict):
                    raise ValueError("no YAML front matter")
        except (SourceError, ValueError, OSError, yaml.YAMLError) as e:
            raise ExportCheckError(f"{path}: the export does not read back ({e}); do not use it") from None
    if not tensors:
        raise ExportCheckError(f"{out}: the export holds no weights; do not use it")
    return tensors


def trained_input_mode(checkpoint: str | Path) -> str | None:
    """The input protocol the run that wrote `checkpoint` trained with (its run.json), None when unrecorded."""
    return read_run(Path(checkpoint).parent).get("options", {}).get("input_mode")


def _layout_files(state: dict, config: HubertConfig, layout: str) -> tuple[dict, dict, bool]:
    """(state dict, config.json, whether our PyTorch code goes along) for an export layout."""
    if layout == "released":
        return (*released.from_ours(state, config), False)
    if has_linears(config):
        return state, export_config(config), True
    return state, {**to_hf_config(config), "architectures": ["HubertForSequenceClassification"]}, False
