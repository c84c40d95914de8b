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
feeds it as training did, and a README.md model card generated from the model and its run (--license for its front
matter). SRC may be a Hub id org/name[@revision]. With --push-to-hub ORG/NAME the export, once written and read back,
is uploaded there (--private, --revision, --commit-message).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("converters.flax_to_torch"))

import argparse
import dataclasses
import json

from exhubert_jax import adapters
from exhubert_jax.data.loading.input_protocol import INPUT_MODES
from exhubert_jax.hub.repos import resolve_checkpoint
from exhubert_jax.pretrained import from_pretrained
from exhubert_jax.process.commands import USER_ERROR, command
from exhubert_jax.process.options import (add_flags, add_positionals, command_parser, option, parse,
                                          require_positionals)

from . import hub_push
from .export import LAYOUTS, export, trained_input_mode, verify
from .peft_io import export_peft


@dataclasses.dataclass
class ExportOptions:
    """The command's flags (a --config file's keys are these names, and those of AdapterChoice and Paths)."""

    layout: str = option("ours", choices=LAYOUTS,
                         help="ours: transformers HuBERT, or our self-contained ExHuBERT code; released: the released "
                              "ExHuBERT's key layout and config (gated models with 1 copy only)")
    input: str | None = option(None, choices=INPUT_MODES,
                               help="input protocol of preprocessor_config.json (default: the one the model was trained "
                                    "with, from run.json beside the checkpoint; else masked)")


@dataclasses.dataclass
class AdapterChoice:
    """What becomes of adapters: at most one of these (a mutually exclusive group)."""

    peft: bool = option(False, action="store_true", help="LoRA models: a peft adapter in OUT (adapter_config.json, "
                                                         "adapter_model.safetensors), the base in OUT/base")
    merge: bool = option(False, action="store_true",
                         help="fold LoRA, IA3 and BitFit adapters into the weights, then export the plain model")


@dataclasses.dataclass
class Paths:
    """The positional arguments, which a --config file may give instead."""

    src: str | None = option(None, help="exhubert-jax checkpoint directory (params/ + config.json), a training "
                                        "workdir (uses best/, else final/), or a Hub id org/name[@revision]")
    out: str | None = option(None, help="output HF directory")


def build_parser() -> argparse.ArgumentParser:
    """SRC OUT, --config FILE and the declared flags; --peft and --merge exclude each other."""
    ap = command_parser(__doc__.splitlines()[0], ExportOptions, hub_push.HubOptions)
    add_positionals(ap, Paths)
    add_flags(ap.add_mutually_exclusive_group(), AdapterChoice)
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line over --config's values (flags win); SRC and OUT are required from either."""
    ap = build_parser()
    args = parse(ap, argv, ExportOptions, AdapterChoice, Paths, hub_push.HubOptions)
    if args.peft and args.merge:  # one or both from the file (argparse refuses both flags itself)
        ap.error("argument --merge: not allowed with argument --peft")
    require_positionals(ap, args, Paths)
    return args


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    hub_push.check(args)  # before any work
    try:
        src, which = resolve_checkpoint(args.src)
        if which:
            print(f"{args.src} is a training workdir: exporting its {which}/ checkpoint {src}", file=sys.stderr)
        model, params = from_pretrained(src)
        config, folded = model.config, []
        if args.merge:
            params, config, folded = adapters.merge_all(params, config)
        input_mode = args.input or trained_input_mode(src) or "masked"
        card = {"source": src, "input_mode": input_mode, "license": args.license, "where": args.push_to_hub}
        if args.peft:
            out = export_peft(params, config, args.out, **card)
        else:
            out = export(params, config, args.out, args.layout, **card)
        del params
        tensors = verify(out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    url = hub_push.push(out, args, "PyTorch") if args.push_to_hub else None
    if url:
        print(f"pushed {out} to {url}", file=sys.stderr)
    print(json.dumps({"src": str(src), "out": str(out), "layers": config.total_layers,
                      "style": config.expansion_style or "plain", "merged_adapters": folded, "input": input_mode,
                      "tensors": tensors, **({"url": url} if url else {})}))
    return 0
