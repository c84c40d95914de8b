"""The one forward pass for validation, evaluation and file inference: jitted, mesh-aware, compiled per batch shape."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from exhubert_jax.data.loading.devices import batch_arrays, data_shard, local_size, pad_rows, replicated, to_device
from exhubert_jax.data.sources.labels import label_field
from exhubert_jax.evaluation.metrics import uar


class Predictor:
    """`(params, input_values, attention_mask) -> float32 logits` on the host for the real rows; records each shape
    it compiles for. With a mesh the batch is padded to a multiple of its size and split over the data axis. When the
    mesh spans several processes, each passes its own rows (the same count on each) and gets the logits of all rows,
    process by process."""

    def __init__(self, model: Any, mesh: Mesh | None = None):
        self.model, self.mesh = model, mesh
        self.compiled_shapes: list[tuple[int, ...]] = []
        self.shard = data_shard(mesh)
        kwargs = dict(out_shardings=replicated(mesh)) if mesh is not None else {}
        self._jitted = jax.jit(self._forward, **kwargs)

    def _forward(self, params, input_values, attention_mask):
        """Traced once per input shape: compiled_shapes grows only when XLA compiles."""
        self.compiled_shapes.append(tuple(input_values.shape))
        out = self.model.apply({"params": params}, input_values, attention_mask, deterministic=True)
        return out.logits if out.values is None else jnp.concatenate([out.logits, out.values.astype(out.logits.dtype)], -1)

    def __call__(self, params: Any, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """float32 logits (B, num_labels)."""
        return self.outputs(params, input_values, attention_mask)[:, :self.model.config.num_labels]

    def outputs(self, params: Any, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """float32 (B, num_labels + len(dimensions)): the logits, then the regression values."""
        device = self.placed(input_values, attention_mask)
        return self.real_rows(self._jitted(params, device["input_values"], device["attention_mask"]),
                              len(input_values))

    def placed(self, input_values: np.ndarray, attention_mask: np.ndarray, **extra: np.ndarray) -> dict:
        """The batch's arrays (and `extra` per-row arrays) padded to a multiple of the mesh's size and placed over its
        data axis."""
        rows = len(input_values)
        arrays = dict(input_values=np.asarray(input_values, np.float32),
                      attention_mask=np.asarray(attention_mask, np.int32), weights=np.ones(rows, np.float32), **extra)
        arrays = pad_rows(arrays, local_size(self.mesh))
        return to_device({k: v for k, v in arrays.items() if k != "weights"}, self.mesh)

    def real_rows(self, out: jax.Array, rows: int) -> np.ndarray:
        """A forward's output on the host without the padding rows placed() added (every process's)."""
        out = np.asarray(jax.device_get(out))
        n = self.shard[1] if self.shard else 1
        return out.reshape(n, -1, out.shape[-1])[:, :rows].reshape(-1, out.shape[-1])


class SplitPredictions(NamedTuple):
    """Every utterance of a split once: its index in the split, target, logits; the audio seconds seen; the
    regression values (N, len(dimensions)) and the dimensional targets (N, 3; NaN where unknown)."""

    indices: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    seconds: float
    values: np.ndarray | None = None
    dims: np.ndarray | None = None


def predict_split(predictor: Predictor, params: Any, source: Any, *, batch_size: int, max_seconds: float | None,
                  label_space: str = "emotion", input_mode: str = "masked", corpus: str | None = None,
                  card: Any = None, progress: bool = False) -> SplitPredictions:
    """Logits for every utterance of a source, in length-bucketed batches (masked) or as the model card feeds them
    (card: each clip zero-padded to max_seconds, never cropped, normalised as the card's feature extractor does,
    and averaged over every frame; `card` is a data.card.CardProtocol, by default the card's own). `progress`: show
    the utterances done on stderr (process.progress)."""
    from exhubert_jax.data.audio import SAMPLE_RATE
    from exhubert_jax.data.loading.batching import DEFAULT_MAX_SECONDS, eval_batches
    from exhubert_jax.data.loading.input_protocol import CardProtocol
    from exhubert_jax.process.progress import progress as display

    seconds_cap = max_seconds or DEFAULT_MAX_SECONDS
    kwargs = {}
    if input_mode == "card":
        width = int(round(seconds_cap * SAMPLE_RATE))
        card = card or CardProtocol(max_length=width)
        kwargs = dict(buckets=(card.max_length,), card=card)
    where = " ".join(str(w) for w in (corpus, getattr(source, "name", None)) if w)
    bar = display(len(source) if hasattr(source, "__len__") else None, f"predict {where}".rstrip(), "utterance",
                  quiet=not progress or jax.process_index() != 0)
    parts = []
    for batch in eval_batches(source, batch_size, max_seconds=seconds_cap, corpus=corpus, shard=predictor.shard,
                              **kwargs):
        arrays = dict(batch_arrays(batch, label_space, input_mode), indices=np.asarray(batch.indices),
                      dims=np.asarray(batch.dims, np.float32))
        out = predictor.outputs(params, arrays["input_values"], arrays["attention_mask"])
        if predictor.shard:  # this process read its share of the batch; the logits cover all of it
            from jax.experimental.multihost_utils import process_allgather

            arrays = process_allgather({k: arrays[k] for k in ("targets", "weights", "indices", "dims")}, tiled=True)
        parts.append((arrays, out, float(batch.n_seconds)))
        bar.update(int((arrays["weights"] > 0).sum()))
    bar.close()
    return collected(parts, predictor.model.config)


def collected(parts: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray, float]], config: Any) -> SplitPredictions:
    """SplitPredictions of a split's batches, each (arrays with targets, weights, indices and dims; the forward's
    outputs; its audio seconds): the real rows (weight > 0) of every batch, in order."""
    indices, targets, outputs, dims = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)], \
        [np.zeros((0, config.num_labels + len(config.dimensions)))], [np.zeros((0, 3))]
    for arrays, out, _ in parts:
        real = np.asarray(arrays["weights"]) > 0
        indices.append(np.asarray(arrays["indices"])[real])
        targets.append(np.asarray(arrays["targets"])[real])
        dims.append(np.asarray(arrays["dims"], np.float32)[real])
        outputs.append(out[real])
    out = np.concatenate(outputs).astype(np.float32)
    values = out[:, config.num_labels:] if config.dimensions else None
    return SplitPredictions(np.concatenate(indices), np.concatenate(targets), out[:, :config.num_labels],
                            sum(seconds for _, _, seconds in parts), values, np.concatenate(dims).astype(np.float32))


def split_ccc(p: SplitPredictions, dimensions: tuple[str, ...]) -> float:
    """Mean CCC over the model's dimensions that the split has targets for (NaN when it has none)."""
    from exhubert_jax.evaluation.dimensional import DIMENSIONS, summarize_dims

    if p.values is None or not len(p.values):
        return float("nan")
    targets = p.dims[:, [DIMENSIONS.index(d) for d in dimensions]]
    return summarize_dims(targets, p.values, dimensions)["mean_ccc"]


def validation_uar(predictor: Predictor, params: Any, sources: Mapping[str, Any], *, batch_size: int,
                   max_seconds: float | None, label_space: str = "emotion",
                   input_mode: str = "masked") -> dict[str, float]:
    """UAR per corpus (models with classes) and 'NAME ccc', the mean CCC over the dimensions, per corpus with
    dimensional targets (models with dimensions); 'mean' is the unweighted mean of all of them (over corpora, as
    the paper averages)."""
    config = predictor.model.config
    label_field(label_space)  # an unknown label space fails before any work
    result = {}
    for name in sorted(sources):
        p = predict_split(predictor, params, sources[name], batch_size=batch_size, max_seconds=max_seconds,
                          label_space=label_space, input_mode=input_mode, corpus=name)
        if config.num_labels:
            result[name] = float(uar(p.targets, p.logits.argmax(-1), config.num_labels)) if len(p.targets) \
                else float("nan")
        if config.dimensions:
            score = split_ccc(p, config.dimensions)
            if np.isfinite(score):
                result[f"{name} ccc"] = score
    result["mean"] = float(np.mean(list(result.values()))) if result else float("nan")
    return result
