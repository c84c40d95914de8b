"""Batches on devices: the data mesh, a batch's host arrays, row padding, and placement split over the mesh (shared
by training and prediction)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from exhubert_jax.data.errors import DataError
from exhubert_jax.data.sources.dimensions import DIMENSIONS
from exhubert_jax.data.sources.labels import label_field


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ('data',) mesh over all (or the given) devices."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that replicates an array on every device of the mesh."""
    return NamedSharding(mesh, P())


def local_size(mesh: Mesh | None) -> int:
    """Devices of the mesh on this process (what a process's rows are padded to a multiple of)."""
    return len(mesh.local_devices) if mesh is not None else 1


def data_shard(mesh: Mesh | None) -> tuple[int, int] | None:
    """(this process's position, process count) among the processes of the mesh, or None when it has one process.
    Process i holds rows [i*B/n, (i+1)*B/n) of every global batch (jax.devices() lists devices process by process)."""
    owners = sorted({d.process_index for d in mesh.devices.flat}) if mesh is not None else []
    return (owners.index(jax.process_index()), len(owners)) if len(owners) > 1 else None


def batch_arrays(batch: Any, label_space: str = "emotion", input_mode: str = "masked",
                 dimensions: tuple[str, ...] = (), task_weights: tuple[float, float] | None = None,
                 soft_classes: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a data.batching.Batch that a step needs (a 'card' batch's mask already covers the padding the
    card adds, which is averaged like audio; data.card). With `dimensions`, their targets (0 where unknown) and a
    mask of the known ones; with task_weights, the (categorical, dimensional) loss weights; with soft_classes (the
    head's class count: soft targets), `soft_targets` (soft_targets)."""
    mask = np.asarray(batch.attention_mask, np.int32)
    out = dict(input_values=np.asarray(batch.input_values, np.float32), attention_mask=mask,
               targets=np.asarray(getattr(batch, label_field(label_space)), np.int32),
               weights=np.asarray(batch.weights, np.float32))
    if dimensions:
        dims = np.asarray(batch.dims, np.float32)[:, [DIMENSIONS.index(d) for d in dimensions]]
        known = np.isfinite(dims)
        out.update(dims=np.where(known, dims, 0.0).astype(np.float32), dims_mask=known.astype(np.float32))
    if task_weights is not None:
        out["task_weights"] = np.broadcast_to(np.asarray(task_weights, np.float32), (len(mask), 2)).copy()
    if soft_classes:
        out["soft_targets"] = soft_targets(batch, label_space, soft_classes)
    return out


def soft_targets(batch: Any, label_space: str, classes: int) -> np.ndarray:
    """float32 (B, classes): each row's label distribution in the label space (Batch.dists or .native_dists), or its
    one-hot hard label where it has none (all 0 for a label of -1 and for padding rows, which weigh 0)."""
    targets = np.asarray(getattr(batch, label_field(label_space)))
    one_hot = ((targets[:, None] == np.arange(classes)) & (np.asarray(batch.weights)[:, None] > 0)).astype(np.float32)
    dists = getattr(batch, "dists" if label_space == "emotion" else "native_dists", None)
    if dists is None:
        return one_hot
    if dists.shape[1] != classes:
        raise DataError(f"{batch.corpus}: its label distributions have {dists.shape[1]} classes, the head {classes}; "
                        "train a head on the label space the distributions are in (--labels)")
    return np.where(dists.sum(1, keepdims=True) > 0, dists, one_hot).astype(np.float32)


def pad_rows(arrays: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """Pad the batch dimension to a multiple (padding rows get weight 0 and an all-ones mask)."""
    b = arrays["weights"].shape[0]
    extra = (-b) % multiple
    if not extra:
        return arrays
    out = {}
    for k, v in arrays.items():
        fill = 1 if k == "attention_mask" else 0
        out[k] = np.concatenate([v, np.full((extra, *v.shape[1:]), fill, v.dtype)])
    return out


def to_device(arrays: dict[str, np.ndarray], mesh: Mesh | None) -> dict[str, jax.Array]:
    """Place host arrays on the devices, split along the batch axis over the mesh; with several processes each passes
    its own rows and the result is the global array."""
    if mesh is None:
        return jax.device_put(arrays)
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() > 1:
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in arrays.items()}
    return jax.device_put(arrays, sharding)
