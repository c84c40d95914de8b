"""Flax checkpoints on disk: an Orbax parameter checkpoint plus config.json."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from .config import HubertConfig
from .model import HubertForSequenceClassification, param_shapes
from .errors import ExhubertError

PARAMS_DIR = "params"
CONFIG_FILE = "config.json"


class CheckpointError(ExhubertError, ValueError):
    """A checkpoint directory that cannot be read as asked."""


def _config_of(model_or_config) -> HubertConfig:
    return model_or_config if isinstance(model_or_config, HubertConfig) else model_or_config.config


def save_pretrained(path: str | os.PathLike, model_or_config, params: dict, *, overwrite: bool = True) -> Path:
    """Write params (Orbax) and config.json into `path`; returns the directory. In a multi-process run the calling
    process writes alone (host arrays, no barrier with the others)."""
    path = Path(path).absolute()
    config = _config_of(model_or_config)
    _check_tree(params, param_shapes(config), str(path))
    path.mkdir(parents=True, exist_ok=True)
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with ocp.StandardCheckpointer(**(dict(multiprocessing_options=alone) if jax.process_count() > 1 else {})) as ckptr:
        ckptr.save(path / PARAMS_DIR, params, force=overwrite)
        ckptr.wait_until_finished()
    config.save(path / CONFIG_FILE)
    return path


def load_config(path: str | os.PathLike) -> HubertConfig:
    """The config.json of a converted checkpoint directory."""
    cfg_path = Path(path) / CONFIG_FILE
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path} not found: not an exhubert-jax checkpoint directory")
    return HubertConfig.load(cfg_path)


def from_pretrained(path: str | os.PathLike, *, dtype=None, remat: bool = False):
    """Load (model, params) from a directory written by save_pretrained or converters.torch_to_flax."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    if not (path / PARAMS_DIR).is_dir():
        hint = ""
        if any((path / f).exists() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
            hint = f"; it looks like a PyTorch checkpoint: run `python -m converters.torch_to_flax {path} OUT` first"
        raise CheckpointError(f"{path} has no '{PARAMS_DIR}/' Orbax checkpoint{hint}")
    config = load_config(path)
    abstract = param_shapes(config)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            params = ckptr.restore(path / PARAMS_DIR, abstract)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path / PARAMS_DIR} does not match {path / CONFIG_FILE}: {e}") from e
    kwargs = {} if dtype is None else {"dtype": dtype}
    return HubertForSequenceClassification(config, remat=remat, **kwargs), params


def _check_tree(params: dict, shapes: dict, where: str) -> None:
    """Raise CheckpointError naming the first missing, extra or mis-shaped leaf."""
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(shapes)}
    for key in sorted(set(want) - set(got)):
        raise CheckpointError(f"{where}: parameter {key} is missing")
    for key in sorted(set(got) - set(want)):
        raise CheckpointError(f"{where}: parameter {key} is not part of this config")
    for key in sorted(want):
        if tuple(got[key]) != want[key]:
            raise CheckpointError(f"{where}: parameter {key} has shape {got[key]}, config expects {want[key]}")
