"""Which parameters train: trainable/frozen labels from path rules over '/'-joined paths, the partition of a tree by
them, and parameter counts."""

from __future__ import annotations

import re
from typing import Any

import jax

from exhubert_jax.errors import ExhubertError
from exhubert_jax.model.config import HubertConfig
from exhubert_jax.model.expansion_layout import FREEZE_MODES, trainable_subtrees

TRAINABLE, FROZEN = "trainable", "frozen"


class LabelError(ExhubertError, ValueError):
    """A parameter that no freezing rule covers, or optimiser settings that cannot work."""


def freezing_rules(config: HubertConfig, freeze: str = "original") -> list[tuple[str, str]]:
    """(regex, label) rules over '/'-joined parameter paths; the first match wins and every path must match one."""
    if freeze not in FREEZE_MODES:
        raise LabelError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    expansion = [(rf"^{'/'.join(path)}/", TRAINABLE if trains else FROZEN)
                 for path, trains in trainable_subtrees(config.expansion_copies, freeze).items()]
    return [
        (r"^hubert/feature_extractor/", FROZEN),  # the CNN is frozen for the entire training (paper, section 4.1)
        *expansion,
        (r"^hubert/encoder/(pos_conv_embed|layer_norm)/", TRAINABLE),
        (r"^hubert/feature_projection/", TRAINABLE),
        (r"^hubert/masked_spec_embed$", TRAINABLE),
        (r"^(projector|classifier|regressor)/", TRAINABLE),
        (r"^layer_weights$", TRAINABLE),
    ]


def path_str(path: tuple) -> str:
    """'a/b/c' for a jax key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def labels_from_rules(params: Any, rules: list[tuple[str, str]]) -> Any:
    """Label every leaf by the first matching rule; an uncovered leaf is an error naming it."""
    compiled = [(re.compile(p), label) for p, label in rules]

    def label(path, _):
        name = path_str(path)
        for pattern, lab in compiled:
            if pattern.search(name):
                return lab
        raise LabelError(f"parameter {name} is covered by no freezing rule")

    return jax.tree_util.tree_map_with_path(label, params)


def param_labels(params: Any, config: HubertConfig, freeze: str = "original") -> Any:
    """'trainable'/'frozen' for every parameter of a (plain or expanded) model."""
    return labels_from_rules(params, freezing_rules(config, freeze))


def split_params(params: Any, labels: Any) -> tuple[Any, Any]:
    """(trainable, frozen) trees; each holds None where the other holds the leaf."""
    trainable = jax.tree.map(lambda p, lab: p if lab == TRAINABLE else None, params, labels)
    frozen = jax.tree.map(lambda p, lab: p if lab == FROZEN else None, params, labels)
    return trainable, frozen


def merge_params(trainable: Any, frozen: Any) -> Any:
    """Inverse of split_params."""
    return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen, is_leaf=lambda x: x is None)


def count(tree: Any, labels: Any | None = None, which: str = TRAINABLE) -> int:
    """Number of scalars in a (shape) tree, optionally only those labelled `which`."""
    sizes = jax.tree.map(lambda x: int(x.size) if hasattr(x, "size") else 0, tree)
    if labels is None:
        return sum(jax.tree.leaves(sizes))
    return sum(s for s, lab in zip(jax.tree.leaves(sizes), jax.tree.leaves(labels)) if lab == which)
