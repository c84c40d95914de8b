"""Reading and writing PyTorch/HF checkpoint files as numpy state dicts (no pickle of untrusted code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.atomic_files import umask

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class SourceError(ExhubertError, ValueError):
    """A source checkpoint that cannot be read."""


def _to_numpy(tensors: dict) -> dict[str, np.ndarray]:
    """torch tensors (any float dtype) -> float32 numpy arrays."""
    return {k: v.detach().float().cpu().numpy() for k, v in tensors.items()}


def read_weight_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One .safetensors or .bin/.pt state-dict file (torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"weight file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return _to_numpy(load_file(str(path)))
        import torch
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except SourceError:
        raise
    except Exception as e:  # corrupt or foreign files: name the file and the cause
        raise SourceError(f"cannot read weights from {path}: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SourceError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return _to_numpy(state)


def read_hf_directory(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The weights of an HF model directory: single or sharded safetensors, or pytorch_model.bin."""
    path = Path(path)
    for name in WEIGHT_FILES:
        candidate = path / name
        if not candidate.exists():
            continue
        if name.endswith(".index.json"):
            with open(candidate) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state: dict[str, np.ndarray] = {}
            for shard in shards:
                state.update(read_weight_file(path / shard))
            return state
        return read_weight_file(candidate)
    raise SourceError(f"{path} holds none of {', '.join(WEIGHT_FILES)}")


def read_source(src: str | os.PathLike, config_path: str | os.PathLike | None = None) -> tuple[dict, dict | str]:
    """(state dict, HF config dict or preset name) from an HF directory or a bare state-dict file + --config."""
    src = Path(src)
    if not src.exists():
        raise SourceError(f"source {src} does not exist")
    state = read_hf_directory(src) if src.is_dir() else read_weight_file(src)
    if config_path is None:
        cfg_file = (src if src.is_dir() else src.parent) / "config.json"
        if not cfg_file.exists():
            where = f"in {src}" if src.is_dir() else f"beside {src}"
            raise SourceError(f"no config.json {where}; pass --config (an HF config.json or a preset name)")
        config_path = cfg_file
    if not os.path.exists(config_path):
        return state, str(config_path)  # a preset name
    try:
        with open(config_path) as f:
            return state, json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{config_path} is not valid JSON ({e}); fix it or pass --config") from None


def tensor_bytes(*trees) -> int:
    """The bytes of the arrays in state dicts or parameter trees as float32: what their safetensors files need, less
    small headers."""
    import jax

    return 4 * sum(int(np.size(x)) for x in jax.tree.leaves(trees))


def write_safetensors(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a float32 state dict as safetensors, readable like any other new file (umask applies)."""
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o666 & ~umask())  # safetensors writes 0600; give the file the mode of any other new file
