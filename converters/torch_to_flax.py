"""Convert a PyTorch HuBERT or ExHuBERT checkpoint (HF directory, Hub id or state-dict file) to an exhubert-jax Flax
checkpoint.

Usage: python -m converters.torch_to_flax SRC OUT [--config CONFIG_OR_PRESET] [--num-labels N] [--peft ADAPTER_DIR]
SRC is a local directory or file, or a Hub id `org/name[@revision]` (downloaded through huggingface_hub's cache; a
local path of the same spelling wins). Recognised by their keys: transformers HuBERT (any head), our own exports,
and the released ExHuBERT (amiriparian/ExHuBERT: gate_bb_linear in every layer), which becomes a model with the
"gated" layout, LayerDrop off as its code runs. The weights are read tensor by tensor (exhubert_jax.hub.conversion).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("converters.torch_to_flax"))

import argparse
import dataclasses
import json
from pathlib import Path

from exhubert_jax.hub.conversion import config_for, convert, load_source  # noqa: F401 - config_for, convert: kept here
from exhubert_jax.hub.repos import source_of
from exhubert_jax.model.config import HubertConfig
from exhubert_jax.pretrained import save_pretrained
from exhubert_jax.process.commands import USER_ERROR, command
from exhubert_jax.process.options import (add_flags, add_positionals, config_values, known_keys, option, read_config,
                                          require_positionals)


@dataclasses.dataclass
class ConvertOptions:
    """The command's flags (a --config options file's keys are these names, and those of Paths)."""

    config: str | None = option(None, help="HF config.json or preset name (tiny/base/large/xlarge) for bare state "
                                           "dicts; or a .yaml/.json file of this command's options, keyed by option "
                                           "name (flags given on the command line win)")
    num_labels: int | None = option(None, type=int,
                                    help="classifier size (default: the source's, or 6 emotion classes)")
    seed: int = option(0, type=int, help="seed for freshly initialised head parameters")
    peft: str | None = option(None, metavar="ADAPTER_DIR", help="a peft LoRA adapter directory to load on top of SRC")


@dataclasses.dataclass
class Paths:
    """The positional arguments, which a --config options file may give instead."""

    src: str | None = option(None, help="HF model directory, Hub id org/name[@revision], or a .safetensors/.bin "
                                        "state-dict file (then pass --config)")
    out: str | None = option(None, help="output directory (Orbax params + config.json)")


# Keys only a model's config has: a .json --config holding one is the model's config, else a file of options.
MODEL_CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(HubertConfig)) | {
    "model_type", "architectures", "id2label", "label2id", "transformers_version", "_name_or_path",
    "exhubert_expansion"}


def is_options_file(value: str) -> bool:
    """Whether a --config value is a file of this command's options (.yaml/.yml, or .json without a model's keys)
    rather than the model's HF config.json or a preset name."""
    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # read_source says what is wrong with it
    own = known_keys(ConvertOptions, Paths)
    return isinstance(data, dict) and not any(k in MODEL_CONFIG_KEYS and k not in own for k in data)


def build_parser() -> argparse.ArgumentParser:
    """SRC OUT and the declared flags, as command_parser makes them, but with --config's two meanings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_positionals(ap, Paths)
    add_flags(ap, ConvertOptions)
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line over the values of its options files (flags win): --config is either the model's
    config (HF config.json or preset) or a file of options (is_options_file), and may be given once as each.
    SRC and OUT are required from either."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", action="append", default=[])
    given = pre.parse_known_args(argv)[0].config
    files = [c for c in given if is_options_file(c)]
    values = {}
    for path in files:
        values.update(config_values(read_config(path), path, ConvertOptions, Paths))
    ap.set_defaults(**values)
    args = ap.parse_args(argv)
    model = [c for c in given if c not in files]
    args.config = model[-1] if model else values.get("config")
    args.config_keys = frozenset(values)
    require_positionals(ap, args, Paths)
    return args


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    try:
        params, config, report = load_source(source_of(args.src), args.config, args.num_labels, args.seed)
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
