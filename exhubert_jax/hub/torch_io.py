"""Reading and writing PyTorch/HF checkpoint files tensor by tensor (no pickle of untrusted code).

A state dict read here maps each name to a LazyTensor: its shape is known at once, its values are read when asked
(np.asarray), so a conversion holds one source tensor at a time besides the tree it fills. model.safetensors is
read with plain file reads at the offsets its header gives (page-cache pages are not the process's memory; a memory
map's pages would be); pytorch_model.bin is memory-mapped by torch.load(mmap=True, weights_only=True) and each
tensor's pages are handed back once it is read. write_safetensors writes tensor by tensor the same way.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.atomic_files import umask

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
MADV_DONTNEED = 4  # Linux: drop these pages of the mapping; a clean file page is read again if touched


class SourceError(ExhubertError, ValueError):
    """A source checkpoint that cannot be read."""


@dataclass(frozen=True, eq=False)
class LazyTensor:
    """A tensor's shape, and how to read it as a float32 numpy array; array-like (np.asarray reads it)."""

    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The values (read now), as `dtype` if given."""
        values = self.read()
        return values if dtype is None else values.astype(dtype, copy=False)


def _safetensors_dtypes() -> dict[str, np.dtype]:
    """safetensors dtype names -> numpy dtypes (little-endian, as the format stores them)."""
    import ml_dtypes

    names = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1", "BOOL": "?"}
    return {**{k: np.dtype(v) for k, v in names.items()}, "BF16": np.dtype(ml_dtypes.bfloat16)}


def _read_span(path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One tensor of a safetensors file, read from `offset` into a new float32 array."""
    values = np.empty(shape, dtype)
    with open(path, "rb") as f:
        f.seek(offset)
        got = f.readinto(values.reshape(-1).view(np.uint8))
    if got != values.nbytes:
        raise SourceError(f"cannot read weights from {path}: the file ends inside a tensor (truncated?)")
    return values.astype(np.float32, copy=False)


def open_safetensors(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """The tensors of a .safetensors file, from its header alone (nothing else is read yet)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 2 <= length <= size - 8:
                raise ValueError(f"header length {length} does not fit a file of {size} bytes")
            header = json.loads(f.read(length))
        dtypes, start, tensors = _safetensors_dtypes(), 8 + length, {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype, shape = dtypes.get(info["dtype"]), tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
            if dtype is None:
                raise ValueError(f"tensor {key!r} has dtype {info['dtype']}, which is not supported")
            if end - begin != math.prod(shape) * dtype.itemsize or start + end > size:
                raise ValueError(f"tensor {key!r} does not fit its data offsets (truncated file?)")
            tensors[key] = LazyTensor(shape, functools.partial(_read_span, path, start + begin, shape, dtype))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise SourceError(f"cannot read weights from {path}: {type(e).__name__}: {e}") from e
    return tensors


def _release(tensor) -> None:
    """Hand the memory-mapped pages of a torch tensor's storage back (Linux; elsewhere nothing happens). Only whole
    pages inside the storage, and only clean file pages: touched again, they are read again from the file."""
    storage = tensor.untyped_storage()
    page = os.sysconf("SC_PAGE_SIZE")
    start = -(-storage.data_ptr() // page) * page
    end = (storage.data_ptr() + storage.nbytes()) // page * page
    if end > start:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        libc.madvise(start, end - start, MADV_DONTNEED)


def _read_torch(tensor, mapped: bool) -> np.ndarray:
    """One tensor of a torch.load state dict as a new float32 array; its mapped pages are released after."""
    import torch

    values = np.array(tensor.detach().to(torch.float32).numpy())
    if mapped and sys.platform.startswith("linux"):
        _release(tensor)
    return values


def open_torch_file(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """The tensors of a .bin/.pt state-dict file: torch.load(weights_only=True), memory-mapped (an old non-zip file
    is loaded whole instead)."""
    import torch

    path, mapped = Path(path), True
    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - an old (non-zip) torch.save file cannot be memory-mapped: load it whole
            state, mapped = torch.load(str(path), map_location="cpu", weights_only=True), False
    except Exception as e:  # corrupt or foreign files: name the file and the cause
        raise SourceError(f"cannot read weights from {path}: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SourceError(f"{path} does not hold a state dict (got {type(state).__name__})")
    wrong = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if wrong is not None:
        raise SourceError(f"{path}: {wrong!r} is a {type(state[wrong]).__name__}, not a tensor")
    return {k: LazyTensor(tuple(v.shape), functools.partial(_read_torch, v, mapped)) for k, v in state.items()}


def open_weight_file(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """One .safetensors or .bin/.pt state-dict file, read lazily."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"weight file {path} does not exist")
    return open_safetensors(path) if path.suffix == ".safetensors" else open_torch_file(path)


def read_weight_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One .safetensors or .bin/.pt state-dict file, every tensor read (small files: adapters)."""
    return {k: np.asarray(v) for k, v in open_weight_file(path).items()}


def read_hf_directory(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """The weights of an HF model directory, read lazily: single or sharded safetensors, or pytorch_model.bin."""
    path = Path(path)
    for name in WEIGHT_FILES:
        candidate = path / name
        if not candidate.exists():
            continue
        if name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(candidate.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise SourceError(f"cannot read the shard index {candidate}: {type(e).__name__}: {e}") from e
            state: dict[str, LazyTensor] = {}
            for shard in shards:
                state.update(open_weight_file(path / shard))
            return state
        return open_weight_file(candidate)
    raise SourceError(f"{path} holds none of {', '.join(WEIGHT_FILES)}")


def read_source(src: str | os.PathLike, config_path: str | os.PathLike | None = None) -> tuple[dict, dict | str]:
    """(state dict of LazyTensors, HF config dict or preset name) from an HF directory or a bare state-dict file +
    --config."""
    src = Path(src)
    if not src.exists():
        raise SourceError(f"source {src} does not exist")
    state = read_hf_directory(src) if src.is_dir() else open_weight_file(src)
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


def write_safetensors(state: Mapping[str, object], path: str | os.PathLike) -> None:
    """Write a state dict (arrays or LazyTensors) as float32 safetensors, tensor by tensor: the header from the
    shapes first, then each tensor as it is made, so only one is held at a time. Readable like any other new file
    (umask applies)."""
    header, offset = {}, 0
    for key, value in state.items():
        shape = tuple(int(n) for n in np.shape(value))
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + 4 * math.prod(shape)]}
        offset = header[key]["data_offsets"][1]
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for key, value in state.items():
            values = np.ascontiguousarray(np.asarray(value, np.float32))
            if values.shape != tuple(header[key]["shape"]):
                raise SourceError(f"{key}: made a tensor of shape {values.shape}, announced {header[key]['shape']}")
            f.write(values.astype("<f4", copy=False).reshape(-1).view(np.uint8).data)
    os.chmod(path, 0o666 & ~umask())
