"""Convert a PyTorch HuBERT or ExHuBERT checkpoint (HF directory or state-dict file) to an exhubert-jax Flax checkpoint.

Usage: python -m converters.torch_to_flax SRC OUT [--config CONFIG_OR_PRESET] [--num-labels N] [--peft ADAPTER_DIR]
Recognised by their keys: transformers HuBERT (any head), our own exports, and the released ExHuBERT
(amiriparian/ExHuBERT: gate_bb_linear in every layer), which becomes a model with the "gated" layout.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.runtime.commands)
    from exhubert_jax.runtime.commands import run_command

    sys.exit(run_command("converters.torch_to_flax"))

import argparse
import json
from pathlib import Path

from exhubert_jax.model.config import EMOTION_CLASSES, HubertConfig, from_hf_config, preset, to_hf_config
from exhubert_jax.model.hubert import init_params, param_shapes
from exhubert_jax.pretrained import save_pretrained
from exhubert_jax.runtime.commands import USER_ERROR, command

from . import released, zll_export
from .mapping import ConversionReport, state_dict_to_params
from .torch_io import read_source


def config_for(hf_config: dict | str, state: dict, num_labels: int | None, where: str = "config.json") -> HubertConfig:
    """Our config for a source: its HF config (or a preset), with a 6-class head unless the source has one."""
    if isinstance(hf_config, dict) and hf_config.get("model_type") == zll_export.MODEL_TYPE:
        hf_config = zll_export.hubert_config_dict(hf_config, where)
    config = preset(hf_config) if isinstance(hf_config, str) else from_hf_config(hf_config)
    has_head = any(k.startswith("classifier.") for k in state)
    if num_labels is not None:
        names = EMOTION_CLASSES if num_labels == len(EMOTION_CLASSES) else None
        config = config.replace(num_labels=num_labels, label_names=names)
    elif not has_head:
        config = config.replace(num_labels=len(EMOTION_CLASSES), label_names=EMOTION_CLASSES)
    return config


def load_source(src: str, config_path: str | None, num_labels: int | None,
                seed: int = 0) -> tuple[dict, HubertConfig, ConversionReport]:
    """(params, config, report) of a PyTorch source, whichever of the layouts we know it has."""
    state, hf_config = read_source(src, config_path)
    where = config_path or str(Path(src) / "config.json")
    ignored = {}
    if released.is_released(state):
        if isinstance(hf_config, str):
            hf_config = to_hf_config(preset(hf_config))
        hf_config, ignored = released.to_ours(state, hf_config)
    config = config_for(hf_config, state, num_labels, where)
    params, report = convert(state, config, seed)
    report.ignored_config.update(ignored)
    return params, config, report


def convert(state: dict, config: HubertConfig, seed: int = 0) -> tuple[dict, ConversionReport]:
    """A torch state dict -> Flax params; missing head tensors are initialised from `seed`."""
    return state_dict_to_params(state, config, param_shapes(config), fresh=init_params(config, seed))


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="HF model directory, or a .safetensors/.bin state-dict file (then pass --config)")
    ap.add_argument("out", help="output directory (Orbax params + config.json)")
    ap.add_argument("--config", help="HF config.json or preset name (tiny/base/large/xlarge) for bare state dicts")
    ap.add_argument("--num-labels", type=int, help="classifier size (default: the source's, or 6 emotion classes)")
    ap.add_argument("--seed", type=int, default=0, help="seed for freshly initialised head parameters")
    ap.add_argument("--peft", metavar="ADAPTER_DIR", help="a peft LoRA adapter directory to load on top of SRC")
    args = ap.parse_args(argv)
    try:
        params, config, report = load_source(args.src, args.config, args.num_labels, args.seed)
        if args.peft:
            from .peft_io import import_peft
            params, config = import_peft(params, config, args.peft)
        out = save_pretrained(args.out, config, params)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    for line in report.lines():
        print(line)
    print(json.dumps({"out": str(out), "used": len(report.used), "dropped": sorted(report.dropped),
                      "initialised": report.initialised, "layers": config.total_layers,
                      "style": config.expansion_style or "plain", "ignored_config": sorted(report.ignored_config)}))
    return 0
