"""Backbone Block Expansion (ExHuBERT, LLaMA Pro) as a pure function over parameter pytrees, plus a count CLI.

Usage: python -m exhubert_jax.expansion --preset large [--copies N] [--style zll|zero_out|gated] [--freeze original|none]
With --table2, prints the four trainable counts of the paper's Table 2 instead.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.model.expansion"))

import argparse
import dataclasses
import json
import math
from typing import Any

import jax
import jax.numpy as jnp

from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import EXPANSION_STYLES, HubertConfig, preset
from exhubert_jax.model.expansion_layout import (COPY_LAYERS, FREEZE_MODES, GATE, LAYOUTS, ORIGINAL_LAYERS,
                                                 ZERO_OUT_MODULES, ZLL, initial_linears, layout, subtree, with_subtree)
from exhubert_jax.model.hubert import param_shapes
from exhubert_jax.model.param_labels import FROZEN, TRAINABLE, count, param_labels, path_str
from exhubert_jax.process.commands import USER_ERROR, command, prog
from exhubert_jax.process.options import NON_NEGATIVE, command_parser, option, parse

# Groups for the parameter summary: (name, path prefix); the first matching prefix wins.
SUMMARY_GROUPS = (
    ("CNN feature encoder", "hubert/feature_extractor/"),
    ("feature projection", "hubert/feature_projection/"),
    ("positional conv", "hubert/encoder/pos_conv_embed/"),
    ("original layers", "/".join(ORIGINAL_LAYERS) + "/"),
    ("copies", "/".join(COPY_LAYERS) + "/"),
    ("ZLLs (copies' Linears)", "/".join(ZLL) + "/"),
    ("originals' Linears", "/".join(GATE) + "/"),
    ("final LayerNorm", "hubert/encoder/layer_norm/"),
    ("masked_spec_embed", "hubert/masked_spec_embed"),
    ("head", ""),
)
# The trainable counts of the paper's Table 2: (model, copies, style, freeze, the paper's figure in millions).
TABLE2 = (
    ("HuBERT Large", 0, None, "original", 311.49),
    ("ExHuBERT Large", 1, "gated", "original", 336.68),
    ("ExHuBERT XLarge", 2, "zll", "original", 664.18),
    ("ExHuBERT Non-Frozen", 1, "gated", "none", 664.18),
)
# Why the paper's Non-Frozen figure needs the gated layout.
NON_FROZEN_NOTE = (
    "note: the paper (Table 2) reports 664.18 M trainable for ExHuBERT Non-Frozen. With a ZLL on the copies only "
    "({n_zll} Linears) everything but the CNN is {ours:,} ({ours_m:.2f} M). The released ExHuBERT also has a Linear "
    "after each of the {n_orig} originals (--style gated), which gives {paper:,} ({paper_m:.2f} M), the paper's figure."
)


class ExpansionError(ExhubertError, ValueError):
    """An expansion request that cannot give an exact identity at initialisation."""


def expanded_config(config: HubertConfig, copies: int = 1, style: str = "zll") -> HubertConfig:
    """The config of `config` expanded with `copies` copies per layer in `style`; checks the request."""
    if config.expansion_copies:
        raise ExpansionError(
            f"config is already expanded ({config.expansion_copies} copies, style {config.expansion_style!r}); "
            "expanding an expanded model is not supported")
    if style not in LAYOUTS:
        raise ExpansionError(f"style must be one of {tuple(LAYOUTS)}, got {style!r}")
    if not isinstance(copies, int) or copies < 1:
        raise ExpansionError(f"copies must be an integer >= 1, got {copies!r}")
    if layout(style).zero_out and not config.do_stable_layer_norm:
        raise ExpansionError(
            "style='zero_out' is an identity only for the pre-LN layout (do_stable_layer_norm=True): in the post-LN "
            "layout the LayerNorms after each residual change the output of a zeroed copy. Use style='zll'.")
    return config.replace(expansion_copies=copies, expansion_style=style)


def _copy_layers(layers: Any, copies: int, style: str) -> Any:
    """Stacked (L, ...) layer params -> (L, copies, ...) copies, output projections zeroed if the layout says so."""
    zero_out = layout(style).zero_out

    def one(path, p):
        tiled = jnp.repeat(jnp.asarray(p)[:, None], copies, axis=1)
        names = tuple(str(getattr(k, "key", k)) for k in path)
        if zero_out and names[:2] in ZERO_OUT_MODULES:
            return jnp.zeros_like(tiled)
        return tiled

    return jax.tree_util.tree_map_with_path(one, layers)


def split_layer_weights(weights: Any, n_layers: int, copies: int) -> Any:
    """Weighted-layer-sum logits for the expanded stack with the same softmax-weighted sum at initialisation.

    Entry 0 (input embedding) stays; each layer's logit w becomes 1+copies logits w - log(1+copies), whose
    softmax weights sum to the original one (the layer and its copies have equal hidden states at init).
    """
    weights = jnp.asarray(weights)
    if weights.shape != (n_layers + 1,):
        raise ExpansionError(f"layer_weights has shape {weights.shape}, expected ({n_layers + 1},)")
    per_layer = jnp.repeat(weights[1:], 1 + copies) - math.log(1 + copies)
    return jnp.concatenate([weights[:1], per_layer])


def expand(params: Any, config: HubertConfig, *, copies: int = 1, style: str = "zll",
           freeze: str = "original") -> tuple[dict, HubertConfig, dict]:
    """Backbone Block Expansion: (new_params, new_config, labels); inputs are never mutated.

    Each original layer i is followed by `copies` copies of itself; the style's layout (expansion_spec.LAYOUTS) says
    which Linears follow which layers. style="zll" adds a zero Linear D->D per copy with a skip connection
    (h + ZLL(copy(h))); style="zero_out" zeroes each copy's attention.out_proj and feed_forward.output_dense;
    style="gated" (the released ExHuBERT) also puts an identity Linear after each original. Every layout computes
    the same function as the unexpanded model at initialisation.
    """
    if freeze not in FREEZE_MODES:
        raise ExpansionError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    new_config = expanded_config(config, copies, style)
    params = jax.tree.map(jnp.asarray, params)  # new containers; numpy inputs are copied, never aliased
    layers = subtree(params, ORIGINAL_LAYERS)
    n_layers = config.num_hidden_layers
    new_params = with_subtree(params, COPY_LAYERS, _copy_layers(layers, copies, style))
    dtype = jax.tree.leaves(layers)[0].dtype
    for path, value in initial_linears(n_layers, copies, style, config.hidden_size, dtype).items():
        new_params = with_subtree(new_params, path, value)
    if config.use_weighted_layer_sum:
        new_params["layer_weights"] = split_layer_weights(params["layer_weights"], n_layers, copies)
    return new_params, new_config, param_labels(new_params, new_config, freeze)


def abstract_expand(config: HubertConfig, *, copies: int = 1, style: str = "zll",
                    freeze: str = "original") -> tuple[dict, HubertConfig, dict]:
    """expand() on shapes only (jax.eval_shape over param_shapes): nothing is allocated."""
    new_config = expanded_config(config, copies, style)
    shapes = jax.eval_shape(lambda p: expand(p, config, copies=copies, style=style, freeze=freeze)[0],
                            param_shapes(config))
    return shapes, new_config, param_labels(shapes, new_config, freeze)


def group_counts(shapes: Any, labels: Any) -> dict[str, dict[str, int]]:
    """{group: {"total", "trainable"}} for the summary groups."""
    out = {name: {"total": 0, TRAINABLE: 0} for name, _ in SUMMARY_GROUPS}
    flat_labels = jax.tree.leaves(labels)
    for (path, leaf), lab in zip(jax.tree_util.tree_leaves_with_path(shapes), flat_labels):
        name = path_str(path)
        group = next(g for g, prefix in SUMMARY_GROUPS if name.startswith(prefix))
        out[group]["total"] += int(leaf.size)
        out[group][TRAINABLE] += int(leaf.size) if lab == TRAINABLE else 0
    return out


def summary(config: HubertConfig, copies: int = 0, style: str = "zll", freeze: str = "original") -> dict:
    """Total/trainable/frozen counts (from shapes alone) and per-group counts; copies=0 means unexpanded."""
    if copies:
        shapes, new_config, labels = abstract_expand(config, copies=copies, style=style, freeze=freeze)
    else:
        new_config, shapes = config, param_shapes(config)
        labels = param_labels(shapes, config, freeze)
    return {"config": new_config, "total": count(shapes), "trainable": count(shapes, labels, TRAINABLE),
            "frozen": count(shapes, labels, FROZEN), "groups": group_counts(shapes, labels)}


def format_summary(result: dict) -> list[str]:
    """A small readable table of a summary()."""
    cfg = result["config"]
    lines = [f"layers run: {cfg.total_layers} ({cfg.num_hidden_layers} original, copies per layer: "
             f"{cfg.expansion_copies}, style: {cfg.expansion_style or 'none'})",
             f"{'group':<22}{'total':>14}{'trainable':>14}"]
    for name, c in result["groups"].items():
        if c["total"]:
            lines.append(f"{name:<22}{c['total']:>14,}{c[TRAINABLE]:>14,}")
    lines.append(f"{'TOTAL':<22}{result['total']:>14,}{result['trainable']:>14,}")
    lines.append(f"frozen: {result['frozen']:,}   trainable: {result['trainable']:,} ({result['trainable'] / 1e6:.2f} M)")
    return lines


def non_frozen_note(result: dict) -> str:
    """The paper-vs-ours explanation for the Non-Frozen count of a zll expansion."""
    cfg = result["config"]
    ours, linear, n_orig = result["trainable"], cfg.hidden_size * (cfg.hidden_size + 1), cfg.num_hidden_layers
    paper = ours + n_orig * linear
    return NON_FROZEN_NOTE.format(n_zll=n_orig * cfg.expansion_copies, ours=ours, ours_m=ours / 1e6, n_orig=n_orig,
                                  paper=paper, paper_m=paper / 1e6)


def table2(config: HubertConfig) -> list[dict]:
    """The four trainable counts of the paper's Table 2 for `config` (HuBERT Large gives the paper's figures)."""
    rows = []
    for name, copies, style, freeze, paper in TABLE2:
        result = summary(config, copies, style or "zll", freeze)
        rows.append(dict(model=name, copies=copies, style=style, freeze=freeze, trainable=result["trainable"],
                         paper_m=paper, matches=round(result["trainable"] / 1e6, 2) == paper))
    return rows


def format_table2(rows: list[dict]) -> list[str]:
    """Table 2's counts as lines: ours exactly, the paper's in millions, and whether they agree."""
    lines = [f"{'model':<22}{'layout':<24}{'trainable':>14}{'paper':>10}"]
    for r in rows:
        where = f"{r['style'] or 'plain'}, freeze {r['freeze']}" if r["copies"] else "CNN frozen"
        lines.append(f"{r['model']:<22}{where:<24}{r['trainable']:>14,}{r['paper_m']:>9.2f}M"
                     f"{'' if r['matches'] else '  (differs)'}")
    return lines


@dataclasses.dataclass
class CountOptions:
    """The count CLI's model and expansion."""

    preset: str = option("large", help="tiny, base, large or xlarge")
    copies: int = option(0, type=int, check=NON_NEGATIVE,
                         help="copies per layer (0: unexpanded; 1: ExHuBERT; 2: XLarge)")
    style: str = option("zll", choices=EXPANSION_STYLES)
    freeze: str = option("original", choices=FREEZE_MODES)
    table2: bool = option(False, action="store_true", help="print the four trainable counts of the paper's Table 2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The count CLI's command line (no abbreviations) over --config's values."""
    parser = command_parser(__doc__.splitlines()[0], CountOptions, prog=prog(__name__))
    parser.formatter_class = argparse.HelpFormatter  # the one-line description, wrapped
    return parse(parser, argv, CountOptions)


@command
def main(argv: list[str] | None = None) -> int:
    """CLI: print the parameter table, then a JSON line {"total": ..., "trainable": ...}."""
    args = parse_args(argv)
    if args.table2:
        rows = table2(preset(args.preset))
        print("\n".join(format_table2(rows)))
        print(json.dumps({r["model"]: r["trainable"] for r in rows}))
        return 0
    try:
        result = summary(preset(args.preset), args.copies, args.style, args.freeze)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    for line in format_summary(result):
        print(line)
    if args.copies and args.freeze == "none" and args.style == "zll":
        print(non_frozen_note(result))
    print(json.dumps({"total": result["total"], "trainable": result["trainable"]}))
    return 0
