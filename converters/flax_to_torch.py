"""Convert an exhubert-jax Flax checkpoint to a PyTorch HF directory (config.json + model.safetensors).

Usage: python -m converters.flax_to_torch SRC OUT [--peft]
Plain and zero_out-expanded models load with transformers' HubertForSequenceClassification.from_pretrained(OUT);
ZLL-expanded models load with converters.expanded_torch.ExpandedHubertForSequenceClassification.from_pretrained(OUT).
With --peft, a LoRA-adapted model is written as a peft adapter in OUT and its base in OUT/base (converters.peft_io).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

from exhubert_jax.checkpoint import from_pretrained
from exhubert_jax.config import HubertConfig, to_hf_config

from .mapping import params_to_state_dict
from .torch_io import write_safetensors


def export(params: dict, config: HubertConfig, out: str | Path) -> Path:
    """Write config.json + model.safetensors for PyTorch; returns the directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = params_to_state_dict(jax.tree.map(np.asarray, params), config)
    hf = to_hf_config(config)
    hf["architectures"] = ["ExpandedHubertForSequenceClassification" if config.expansion_style == "zll"
                           else "HubertForSequenceClassification"]
    if config.mask_time_prob == 0 and config.mask_feature_prob == 0:
        state.pop("hubert.masked_spec_embed", None)
    write_safetensors(state, out / "model.safetensors")
    with open(out / "config.json", "w") as f:
        json.dump(hf, f, indent=2)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="exhubert-jax checkpoint directory (params/ + config.json)")
    ap.add_argument("out", help="output HF directory")
    ap.add_argument("--peft", action="store_true", help="LoRA models: a peft adapter in OUT (adapter_config.json, "
                                                         "adapter_model.safetensors), the base in OUT/base")
    args = ap.parse_args(argv)
    try:
        model, params = from_pretrained(args.src)
        if args.peft:
            from .peft_io import export_peft
            out = export_peft(params, model.config, args.out)
        else:
            out = export(params, model.config, args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(out), "layers": model.config.total_layers,
                      "style": model.config.expansion_style or "plain"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
