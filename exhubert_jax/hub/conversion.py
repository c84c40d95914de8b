"""A PyTorch HuBERT or ExHuBERT checkpoint (an HF directory or a state-dict file) to our parameters, tensor by tensor.

Recognised by their keys: transformers HuBERT (any head), our own exports, and the released ExHuBERT
(amiriparian/ExHuBERT: gate_bb_linear in every layer), which becomes a model with the "gated" layout. The tree is
built from the config's shapes and filled from the file one tensor at a time; only head parameters the source lacks
are initialised (from `seed`), nothing else. The command line is converters.torch_to_flax; from_pretrained runs it
on Hub checkpoints (exhubert_jax.hub.repos).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from exhubert_jax.adapters.wrapper import build, param_shapes
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.hub import exhubert_config, released
from exhubert_jax.hub.mapping import ConversionReport, state_dict_to_params
from exhubert_jax.hub.torch_io import read_source
from exhubert_jax.model.config import (
    EMOTION_CLASSES,
    HubertConfig,
    from_hf_config,
    preset,
    to_hf_config,
)


def config_for(hf_config: dict | str, state: dict, num_labels: int | None, where: str = "config.json") -> HubertConfig:
    """Our config for a source: its HF config (or a preset), with a 6-class head unless the source has one."""
    if isinstance(hf_config, dict) and hf_config.get("model_type") == exhubert_config.MODEL_TYPE:
        hf_config = exhubert_config.hubert_config_dict(hf_config, where)
    config = preset(hf_config) if isinstance(hf_config, str) else from_hf_config(hf_config)
    has_head = any(k.startswith("classifier.") for k in state)
    if num_labels is not None:
        names = EMOTION_CLASSES if num_labels == len(EMOTION_CLASSES) else None
        config = config.replace(num_labels=num_labels, label_names=names)
    elif not has_head:
        config = config.replace(num_labels=len(EMOTION_CLASSES), label_names=EMOTION_CLASSES)
    return config


def load_source(src: str | Path, config_path: str | None, num_labels: int | None,
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
    """A torch state dict -> Flax params; head tensors the source lacks are initialised from `seed`."""
    return state_dict_to_params(state, config, param_shapes(config),
                                fresh=lambda paths: fresh_leaves(config, seed, paths))


def fresh_leaves(config: HubertConfig, seed: int, paths: list[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
    """{path: the value init_params(config, seed) gives that leaf}, for these leaves only: the initialisation is
    jitted with only them as outputs, so XLA computes nothing else."""
    model = build(config)
    names = ["/".join(path) for path in paths]

    def pick(rng):
        flat = flatten_dict(model.init(rng, jnp.zeros((1, SAMPLE_RATE), jnp.float32))["params"])
        return {name: flat[path] for name, path in zip(names, paths)}

    values = jax.jit(pick)(jax.random.PRNGKey(seed))
    return {path: np.asarray(values[name]) for name, path in zip(names, paths)}
