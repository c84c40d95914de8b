"""Parameter table of an adapted model, from shapes alone; the last line is JSON {"total": ..., "trainable": ...}.

Usage: python -m exhubert_jax.adapters --preset large --adapter lora:r=8 [--adapter ...]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.adapters.__main__"))

import argparse
import dataclasses
import json
from typing import Any

import jax

from exhubert_jax.adapters import REGISTRY, apply_spec, checked_specs
from exhubert_jax.adapters.core import is_adapter_leaf
from exhubert_jax.model.config import HubertConfig, preset
from exhubert_jax.model.hubert import param_shapes
from exhubert_jax.model.param_labels import TRAINABLE, count, path_str
from exhubert_jax.process.commands import USER_ERROR, command, prog
from exhubert_jax.process.options import command_parser, option, parse

GROUPS = (("adapters", None), ("CNN feature encoder", "hubert/feature_extractor/"),
          ("feature projection", "hubert/feature_projection/"), ("positional conv", "hubert/encoder/pos_conv_embed/"),
          ("original layers", "hubert/encoder/layers/"), ("copies", "hubert/encoder/expansion/layers/"),
          ("final LayerNorm", "hubert/encoder/layer_norm/"), ("masked_spec_embed", "hubert/masked_spec_embed"),
          ("head", ""))


def abstract_apply(config: HubertConfig, specs: list[str]) -> tuple[Any, HubertConfig, Any]:
    """apply_spec on shapes only (nothing allocated): (shapes, config, labels)."""
    out = {}

    def run(params):
        new_params, out["config"], out["labels"] = apply_spec(params, config, specs)
        return new_params

    shapes = jax.eval_shape(run, param_shapes(config))
    return shapes, out["config"], out["labels"]


def table(shapes: Any, labels: Any) -> list[tuple[str, int, int]]:
    """(group, total, trainable) rows; adapter leaves first, then backbone parts by path prefix, then the head."""
    rows = {name: [0, 0] for name, _ in GROUPS}
    for (path, leaf), lab in zip(jax.tree_util.tree_leaves_with_path(shapes), jax.tree.leaves(labels)):
        name = path_str(path)
        group = "adapters" if is_adapter_leaf(name) else next(
            g for g, prefix in GROUPS[1:] if name.startswith(prefix))
        rows[group][0] += int(leaf.size)
        rows[group][1] += int(leaf.size) if lab == TRAINABLE else 0
    return [(name, total, trainable) for name, (total, trainable) in rows.items() if total]


@dataclasses.dataclass
class TableOptions:
    """The model and the adapters whose parameter table is printed."""

    preset: str = option("large", help="tiny, base, large or xlarge")
    adapter: list[str] | None = option(None, action="append", parse=checked_specs,
                                       help=f"method:key=value,... ({', '.join(REGISTRY)}); repeat to compose, in "
                                            "order")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (no abbreviations) over --config's values; --adapter is required unless the file sets it
    (a list there; --adapter on the command line adds to it)."""
    parser = command_parser(__doc__.splitlines()[0], TableOptions, prog=prog(__name__))
    parser.formatter_class = argparse.HelpFormatter  # the one-line description, wrapped
    for action in parser._actions:
        action.required = action.dest == "adapter"
    return parse(parser, argv, TableOptions)


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    try:
        shapes, config, labels = abstract_apply(preset(args.preset), args.adapter)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    total, trainable = count(shapes), count(shapes, labels, TRAINABLE)
    print(f"adapters: {', '.join(config.adapters)}; layers run: {config.total_layers}")
    print(f"{'group':<22}{'total':>14}{'trainable':>14}")
    for name, n, t in table(shapes, labels):
        print(f"{name:<22}{n:>14,}{t:>14,}")
    print(f"{'TOTAL':<22}{total:>14,}{trainable:>14,}")
    print(json.dumps({"total": total, "trainable": trainable}))
    return 0
