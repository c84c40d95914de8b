"""Frozen-feature embeddings (the SUPERB / EmoBox protocol): any hidden layer, all of them, the learnt weighted sum,
or the projector output, per frame or averaged over an utterance's frames.

Audio is cut into near-equal chunks of at most chunk_seconds and batched to three bucket lengths, exactly as
evaluation.predict_audio does, so a whole folder or split compiles at most three shapes. A long file's frames are
its chunks' frames in order; its utterance embedding is the mean over all of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from exhubert_jax.data.loading.batching import default_buckets
from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation.scoring import SAMPLE_RATE, _length_batches, chunk_audio, chunk_length

LEVELS = ("utterance", "frame")
NAMED_LAYERS = ("all", "last", "weighted", "projector")


class EmbeddingError(ExhubertError, ValueError):
    """An embedding request that does not fit the model (a layer it lacks, weights it never learnt)."""


def check_layer(layer: str, config) -> str | int:
    """The layer spec as an int (0 = the transformer's input, N = after layer N) or one of NAMED_LAYERS."""
    n = config.num_hidden_layers * (1 + config.expansion_copies)
    if layer in NAMED_LAYERS:
        if layer == "weighted" and not config.use_weighted_layer_sum:
            raise EmbeddingError("--layer weighted: this model has no learnt layer weights (use_weighted_layer_sum "
                                 "is off); pick --layer N, last or all")
        return layer
    try:
        index = int(layer)
    except ValueError:
        raise EmbeddingError(f"--layer must be a number 0..{n}, {', '.join(NAMED_LAYERS)}; got {layer!r}") from None
    if not 0 <= index <= n:
        raise EmbeddingError(f"--layer {index}: this model has hidden states 0..{n} (0 is the transformer's input)")
    return index


class Embedder:
    """`(params, x, mask) -> (features (B, T, ...) as float32, frame mask (B, T))` for one layer spec, jitted once
    per input shape (compiled_shapes records them)."""

    def __init__(self, model: Any, layer: str | int):
        self.model, self.layer = model, layer
        self.compiled_shapes: list[tuple[int, ...]] = []
        self._jitted = jax.jit(self._forward)

    def _forward(self, params, x, mask):
        """Traced once per shape: the model's hidden states (and projector output) for the chosen layer."""
        self.compiled_shapes.append(tuple(x.shape))
        out, state = self.model.apply({"params": params}, x, mask, deterministic=True, output_hidden_states=True,
                                      capture_intermediates=lambda mdl, _: mdl.name == "projector")
        hidden = out.hidden_states.astype(jnp.float32)  # (L + 1, B, T, D)
        if self.layer == "projector":
            features = state["intermediates"]["projector"]["__call__"][0].astype(jnp.float32)
        elif self.layer == "weighted":
            norm = jax.nn.softmax(params["layer_weights"])
            features = jnp.einsum("l,lbtd->btd", norm, hidden)
        elif self.layer == "all":
            features = jnp.moveaxis(hidden, 0, 2)  # (B, T, L + 1, D)
        else:
            features = hidden[-1 if self.layer == "last" else self.layer]
        return features, out.frame_mask

    def __call__(self, params, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host arrays of features and frame mask."""
        features, frames = self._jitted(params, jnp.asarray(x, jnp.float32), jnp.asarray(mask, jnp.int32))
        return np.asarray(features), np.asarray(frames).astype(bool)


def embed_audio(embedder: Embedder, params, audios: Sequence[np.ndarray], level: str, chunk_seconds: float = 3.0,
                batch_size: int = 8, progress: bool = False) -> tuple[list[np.ndarray], list[int]]:
    """(embeddings, frame counts) of 16 kHz float audio clips: per clip (frames, ...) at frame level or the mean over
    its frames at utterance level. `progress`: show the chunks done on stderr (process.progress)."""
    from exhubert_jax.process.progress import progress as display

    if level not in LEVELS:
        raise EmbeddingError(f"level must be one of {LEVELS}, got {level!r}")
    chunk_samples = chunk_length(chunk_seconds, EmbeddingError)
    owners, pieces = [], []
    for owner, audio in enumerate(audios):
        for piece in chunk_audio(np.asarray(audio, np.float32), chunk_samples):
            owners.append(owner)
            pieces.append(piece)
    parts: list[np.ndarray | None] = [None] * len(pieces)
    bar = display(len(pieces), "embed", "chunk", quiet=not progress)
    for ids, x, mask in _length_batches(list(enumerate(pieces)), batch_size, default_buckets(chunk_seconds)):
        features, frames = embedder(params, x, mask)
        for row, chunk_id in enumerate(ids):
            parts[chunk_id] = features[row][frames[row]]
        bar.update(len(ids))
    bar.close()
    per_clip: list[list[np.ndarray]] = [[] for _ in audios]
    for owner, part in zip(owners, parts):  # chunks in file order
        per_clip[owner].append(part)
    frames_out = [np.concatenate(p, axis=0) for p in per_clip]
    counts = [len(f) for f in frames_out]
    return (frames_out if level == "frame" else [f.mean(axis=0) for f in frames_out]), counts


def embed_split(embedder: Embedder, params, split, level: str, chunk_seconds: float = 3.0, batch_size: int = 8,
                group: int = 256, progress: bool = False) -> tuple[list[np.ndarray], list[dict]]:
    """(embeddings, index rows {file, split, label, native_label, speaker, frames}) of a prepared split, read
    `group` utterances at a time. `progress`: show the utterances done on stderr (process.progress)."""
    from exhubert_jax.data.audio import from_pcm16
    from exhubert_jax.model.config import EMOTION_CLASSES
    from exhubert_jax.process.progress import progress as display

    arrays, rows = [], []
    where = " ".join(str(w) for w in (getattr(split, "corpus", None), getattr(split, "name", None)) if w)
    bar = display(len(split), f"embed {where}".rstrip(), "utterance", quiet=not progress)
    for start in range(0, len(split), group):
        read = split.read_pcm(range(start, min(len(split), start + group)))
        out, counts = embed_audio(embedder, params, [from_pcm16(pcm) for _, pcm in read], level, chunk_seconds,
                                  batch_size)
        arrays += out
        rows += [{"file": f["path"], "split": split.name, "label": EMOTION_CLASSES[f["label"]],
                  "native_label": f["native_label"], "speaker": f["speaker"] or "", "frames": n}
                 for (f, _), n in zip(read, counts)]
        bar.update(len(read))
    bar.close()
    return arrays, rows


def embed_files(embedder: Embedder, params, files: Sequence, level: str, chunk_seconds: float = 3.0,
                batch_size: int = 8, progress: bool = False) -> tuple[list[np.ndarray], list[dict]]:
    """(embeddings, index rows) of audio files (any format or rate, decoded to 16 kHz mono); EmbeddingError names
    the first file that cannot be read. `progress`: show the chunks done on stderr."""
    from exhubert_jax.data.audio import load_audio
    from exhubert_jax.data.errors import AudioError

    audios = []
    for f in files:
        try:
            audios.append(load_audio(f, SAMPLE_RATE))
        except (AudioError, OSError) as e:
            raise EmbeddingError(f"{f}: {getattr(e, 'reason', None) or e}") from None
    out, counts = embed_audio(embedder, params, audios, level, chunk_seconds, batch_size, progress)
    return out, [{"file": str(f), "split": "", "label": "", "native_label": "", "speaker": "", "frames": n}
                 for f, n in zip(files, counts)]


INDEX_COLUMNS = ("row", "file", "split", "label", "native_label", "speaker", "frames", "array")


def write_embeddings(out, arrays: Sequence[np.ndarray], rows: Sequence[dict], level: str) -> list:
    """Utterance level: OUT/embeddings.npy (N, ...) with row i of index.csv for embedding i; frame level: one
    OUT/frames/NNNNNN.npy (frames, ...) per file, named in index.csv's array column. Everything is written into
    temporary siblings first and renamed in at the end (index.csv last), so an interrupted or full-disk run leaves
    the previous output. Returns the paths written."""
    import contextlib
    import csv
    from pathlib import Path

    from exhubert_jax.process.atomic_files import atomic_directory, atomic_files

    out = Path(out)
    utterances = level == "utterance"
    names = ["embeddings.npy"] * len(rows) if utterances else [f"frames/{i:06d}.npy" for i in range(len(rows))]
    with atomic_files(out / "index.csv", *[out / "embeddings.npy"] * utterances) as tmp:
        with open(tmp / "index.csv", "w", newline="") as f:
            w = csv.DictWriter(f, INDEX_COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows({**r, "row": i, "array": name} for i, (r, name) in enumerate(zip(rows, names)))
        if utterances:
            np.save(tmp / "embeddings.npy", np.stack(arrays) if arrays else np.zeros((0,), np.float32))
        with atomic_directory(out / "frames") if not utterances else contextlib.nullcontext() as frames:
            for name, a in zip(names if frames else (), arrays):  # renamed in before index.csv
                np.save(frames / Path(name).name, a)
    return [out / "index.csv", *([out / "embeddings.npy"] if utterances else [out / n for n in names])]
