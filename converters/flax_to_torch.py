"""Convert an exhubert-jax Flax checkpoint (or a training workdir's best/final) to a PyTorch HF directory.

Usage: python -m converters.flax_to_torch SRC OUT [--peft | --merge] [--layout released] [--input masked|card]
Plain and zero_out-expanded models load with transformers' HubertForSequenceClassification.from_pretrained(OUT).
Models with Linears after layers (zll, gated) are written with their PyTorch code (model_type "exhubert"); load
them with AutoModelForAudioClassification.from_pretrained(OUT, trust_remote_code=True).
With --layout released, a gated model is written in the released ExHuBERT's own keys and config (its authors' code
loads it; transformers alone cannot).
With --peft, a LoRA-adapted model is written as a peft adapter in OUT and its base in OUT/base (converters.peft_io).
With --merge, LoRA, IA3 and BitFit adapters are folded into the weights first, and the model exports as one without
them; adapters that cannot fold in (bottleneck) are refused.
Every export holds a preprocessor_config.json (Wav2Vec2FeatureExtractor) for the input protocol the model was trained
with (--input, else the run.json beside the checkpoint, else masked), so pipeline("audio-classification", model=OUT)
feeds it as training did.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.runtime.commands)
    from exhubert_jax.runtime.commands import run_command

    sys.exit(run_command("converters.flax_to_torch"))

import argparse
import json

from exhubert_jax import adapters
from exhubert_jax.data.loading.input_protocol import INPUT_MODES
from exhubert_jax.pretrained import from_pretrained
from exhubert_jax.runtime.commands import USER_ERROR, command
from exhubert_jax.runtime.run_folders import resolve_checkpoint_dir

from .export import LAYOUTS, export, trained_input_mode
from .peft_io import export_peft


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="exhubert-jax checkpoint directory (params/ + config.json), or a training workdir "
                                "(uses best/, else final/)")
    ap.add_argument("out", help="output HF directory")
    ap.add_argument("--layout", choices=LAYOUTS, default="ours",
                    help="ours: transformers HuBERT, or our self-contained ExHuBERT code; released: the released "
                         "ExHuBERT's key layout and config (gated models with 1 copy only)")
    adapter = ap.add_mutually_exclusive_group()
    adapter.add_argument("--peft", action="store_true", help="LoRA models: a peft adapter in OUT (adapter_config.json, "
                                                             "adapter_model.safetensors), the base in OUT/base")
    adapter.add_argument("--merge", action="store_true",
                         help="fold LoRA, IA3 and BitFit adapters into the weights, then export the plain model")
    ap.add_argument("--input", choices=INPUT_MODES, default=None,
                    help="input protocol of preprocessor_config.json (default: the one the model was trained with, "
                         "from run.json beside the checkpoint; else masked)")
    args = ap.parse_args(argv)
    try:
        src, which = resolve_checkpoint_dir(args.src)
        if which:
            print(f"{args.src} is a training workdir: exporting its {which}/ checkpoint {src}", file=sys.stderr)
        model, params = from_pretrained(src)
        config, folded = model.config, []
        if args.merge:
            params, config, folded = adapters.merge_all(params, config)
        input_mode = args.input or trained_input_mode(src) or "masked"
        if args.peft:
            out = export_peft(params, config, args.out, source=src, input_mode=input_mode)
        else:
            out = export(params, config, args.out, args.layout, source=src, input_mode=input_mode)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    print(json.dumps({"src": str(src), "out": str(out), "layers": config.total_layers,
                      "style": config.expansion_style or "plain", "merged_adapters": folded, "input": input_mode}))
    return 0
