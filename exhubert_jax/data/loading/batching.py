"""Length-bucketed batches (training: shuffled, random crops; evaluation: whole utterances) and the
deterministic, exactly resumable round-robin iterator over several corpora.

A *source* is anything with __len__ and __getitem__ returning dict(audio, label, native_index) -- e.g.
dataset.PreparedSplit, whose read_audio(), labels, native_indices and num_samples make this fast (one batched
read per batch, no audio read to find lengths or labels).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from exhubert_jax.data.audio import MIN_SAMPLES, SAMPLE_RATE
from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.input_protocol import CardProtocol
from exhubert_jax.data.prepare.splits import derive_seed
from exhubert_jax.data.sources.labels import LABEL_SPACES

DEFAULT_MAX_SECONDS = 3.0  # the model card's input length
# How a corpus's training examples are drawn: each once per epoch (natural), or each class equally often (balanced)
SAMPLINGS = ("natural", "balanced")
_STATE_VERSION = 1
_NATURAL = {"sampling": "natural", "classes": None}  # the sampling of a RoundRobin state that does not record one


class Batch(NamedTuple):
    """One padded batch of one corpus."""

    corpus: str
    input_values: np.ndarray  # float32 (B, T), normalised per utterance, zero padding
    attention_mask: np.ndarray  # int32 (B, T), 1 = real sample
    labels: np.ndarray  # int32 (B,), 6-class
    native_labels: np.ndarray  # int32 (B,), index into the corpus's native_labels
    weights: np.ndarray  # float32 (B,), 1 real row, 0 padding row (eval only)
    n_seconds: float  # real audio seconds in the batch
    indices: np.ndarray  # int64 (B,), each row's index in its split; -1 for padding rows
    dims: np.ndarray | None = None  # float32 (B, 3): arousal, valence, dominance on [0, 1]; NaN where unknown
    # float32 (B, 6) and (B, native labels): the annotators' label distributions, all-0 rows where a row has none;
    # None when the source has none (with_dists)
    dists: np.ndarray | None = None
    native_dists: np.ndarray | None = None


def default_buckets(max_seconds: float, n: int = 3) -> tuple[int, ...]:
    """n bucket lengths in samples: k/n x max_seconds x 16 kHz for k = 1..n."""
    top = int(round(max_seconds * SAMPLE_RATE))
    if top < MIN_SAMPLES:
        raise DataError(f"max_seconds={max_seconds} is shorter than one frame ({MIN_SAMPLES} samples)")
    return tuple(sorted({max(MIN_SAMPLES, int(round(top * k / n))) for k in range(1, n + 1)}))


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= n; beyond the largest bucket, the next multiple of it (whole-utterance eval)."""
    for b in buckets:
        if n <= b:
            return int(b)
    top = int(buckets[-1])
    return top * math.ceil(n / top)


def normalize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: (x - mean) / sqrt(var + 1e-7), as Wav2Vec2FeatureExtractor(do_normalize=True)."""
    x = x.astype(np.float32, copy=False)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def source_lengths(source: Any) -> np.ndarray:
    """Length in samples of every example (from the source's index when it has one)."""
    if hasattr(source, "num_samples"):
        return np.asarray(source.num_samples, dtype=np.int64)
    return np.asarray([len(source[i]["audio"]) for i in range(len(source))], dtype=np.int64)


def source_classes(source: Any, label_space: str = "emotion") -> np.ndarray:
    """The class index of every example in a label space (emotion: `label`, native: `native_index`), from the
    source's index when it has one (PreparedSplit.labels / .native_indices), else from its examples."""
    if label_space not in LABEL_SPACES:
        raise DataError(f"label space must be one of {LABEL_SPACES}, got {label_space!r}")
    attribute, key = ("labels", "label") if label_space == "emotion" else ("native_indices", "native_index")
    if hasattr(source, attribute):
        return np.asarray(getattr(source, attribute), dtype=np.int64)
    return np.asarray([int(source[i][key]) for i in range(len(source))], dtype=np.int64)


def balanced_order(rng: np.random.Generator, classes: np.ndarray, m: int) -> np.ndarray:
    """m example indices in which every class present fills an equal share of the slots (shares differ by at most
    one, the larger ones going to classes in random order), the classes in random order; within a class the
    examples come in a fresh random order, cycled when the class has fewer examples than its share."""
    present = np.unique(classes)
    slots = rng.permutation(np.resize(rng.permutation(len(present)), m))
    order = np.empty(m, np.int64)
    for k, c in enumerate(present):
        at = np.flatnonzero(slots == k)
        order[at] = np.resize(rng.permutation(np.flatnonzero(classes == c)), len(at))
    return order


_NO_DIMS = (np.nan,) * 3


def _dims_of(source: Any, i: int, example: Any = None) -> tuple[float, ...]:
    """Arousal, valence, dominance of example i (from the source's `dims` index, or the example's own 'dims')."""
    if getattr(source, "dims", None) is not None:
        return tuple(source.dims[i])
    found = example.get("dims") if isinstance(example, dict) else None
    return tuple(found) if found is not None else _NO_DIMS


def _fetch(source: Any, indices: Sequence[int]) -> list[tuple[np.ndarray, int, int, tuple[float, ...]]]:
    """(float32 audio, label, native index, dims) for indices, with one batched read when the source can."""
    scale = np.float32(1.0 / 32768.0)
    idx = [int(i) for i in indices]
    if hasattr(source, "read_audio"):  # labels from the source's index, audio only from the records
        return [(pcm.astype(np.float32) * scale, int(source.labels[i]), int(source.native_indices[i]),
                 _dims_of(source, i)) for i, pcm in zip(idx, source.read_audio(idx))]
    if hasattr(source, "read_pcm"):
        return [(pcm.astype(np.float32) * scale, int(h["label"]), int(h["native_index"]), _dims_of(source, i, h))
                for i, (h, pcm) in zip(idx, source.read_pcm(idx))]
    return [(np.asarray(ex["audio"], np.float32), int(ex["label"]), int(ex["native_index"]), _dims_of(source, i, ex))
            for i, ex in ((i, source[i]) for i in idx)]


def _assemble(corpus: str, indices: Sequence[int], items: Sequence[tuple[np.ndarray, int, int, tuple]],
              offsets: Sequence[int], max_len: int | None, buckets: Sequence[int], batch_size: int,
              width: int | None = None, card: CardProtocol | None = None) -> Batch:
    """Crop, normalise and pad items to one bucket (or to `width`); rows beyond len(items) are zero-weight padding.
    With `card`, each row is what the model card's feature-extractor call makes of the clip, and its mask covers all
    of it (the card passes no attention mask, so the padding it adds is averaged like audio)."""
    waves = [w[o:o + max_len] if max_len else w for (w, *_), o in zip(items, offsets)]
    rows_in = [card(w) for w in waves] if card else [normalize(w) for w in waves]
    if width is None:
        width = bucket_length(max(len(v) for v in rows_in), buckets)
    elif any(len(v) > width for v in rows_in):
        raise DataError(f"{corpus}: an utterance is longer than its source's num_samples says; prepare it again")
    x = np.zeros((batch_size, width), np.float32)
    mask = np.zeros((batch_size, width), np.int32)
    labels = np.zeros(batch_size, np.int32)
    native = np.zeros(batch_size, np.int32)
    weights = np.zeros(batch_size, np.float32)
    rows = np.full(batch_size, -1, np.int64)
    rows[:len(items)] = indices
    dims = np.full((batch_size, 3), np.nan, np.float32)
    for row, (v, (_, label, nat, dim)) in enumerate(zip(rows_in, items)):
        x[row, :len(v)] = v
        mask[row, :len(v)] = 1
        labels[row], native[row], weights[row], dims[row] = label, nat, 1.0, dim
    seconds = sum(len(w) for w in waves) / SAMPLE_RATE
    return Batch(corpus, x, mask, labels, native, weights, float(seconds), rows, dims)


def check_shard(shard: tuple[int, int], batch_size: int) -> tuple[int, int]:
    """(index, count) of this process's share of every global batch; the batch must split evenly."""
    index, count = int(shard[0]), int(shard[1])
    if not 0 <= index < count or batch_size % count:
        raise DataError(f"batch size {batch_size} cannot be split into {count} equal shares (share {index})")
    return index, count


def _share(corpus: str, source: Any, idx: np.ndarray, offsets: np.ndarray, kept: np.ndarray, max_len: int | None,
           buckets: Sequence[int], batch_size: int, shard: tuple[int, int] | None,
           card: CardProtocol | None = None) -> Batch:
    """The batch of global rows idx, or with shard=(i, n) only rows [i*B/n, (i+1)*B/n) of it (B = batch_size), read
    and padded to the width the whole batch needs (from the kept lengths, so every process pads alike); the seconds
    count the whole batch."""
    if shard is None:
        return with_dists(_assemble(corpus, idx, _fetch(source, idx), offsets, max_len, buckets, batch_size,
                                    card=card), source)
    i, n = shard
    share = batch_size // n
    rows = slice(i * share, (i + 1) * share)
    widths = np.maximum(kept, card.max_length) if card else kept
    width = bucket_length(int(widths.max()), buckets)
    batch = _assemble(corpus, idx[rows], _fetch(source, idx[rows]), offsets[rows], max_len, buckets, share, width,
                      card)
    return with_dists(batch._replace(n_seconds=float(kept.sum()) / SAMPLE_RATE), source)


def with_dists(batch: Batch, source: Any) -> Batch:
    """The batch with its rows' label distributions (Batch.dists, .native_dists) from the source's `dists` and
    `native_dists` (dataset.PreparedSplit); unchanged when the source has none. Padding rows get all-0 rows."""
    if getattr(source, "dists", None) is None:
        return batch
    real = batch.indices >= 0
    rows = np.where(real, batch.indices, 0)

    def take(table: np.ndarray) -> np.ndarray:
        """The batch's rows of a (N, C) table, all-0 for padding."""
        return np.where(real[:, None], np.asarray(table)[rows], 0.0).astype(np.float32)

    return batch._replace(dists=take(source.dists), native_dists=take(source.native_dists))


def _corpus_name(source: Any, corpus: str | None) -> str:
    return corpus or getattr(source, "corpus", None) or "corpus"


class CorpusBatches:
    """Endless training batches of one corpus, fixed batch size, deterministic for (seed, corpus, epoch, step).

    Each epoch is a fresh permutation (seed derived from seed, corpus, epoch); a short last batch is filled
    from the start of that permutation, so nothing is dropped. Within windows of sort_window batches the
    examples are ordered by length (less padding) and the batches then shuffled. Utterances longer than
    max_seconds are randomly cropped, the crop drawn from the same per-epoch seed and the slot, so the
    position (epoch, step) alone fixes every following batch. With shard=(i, n) (multi-process training) every
    process plans the same global batches and reads only its rows [i*B/n, (i+1)*B/n) of each. With
    sampling="balanced" an epoch has as many batches, but its slots go to the classes of `label_space` in equal
    shares (balanced_order), so each class is equally likely in every slot.
    """

    def __init__(self, source: Any, batch_size: int, max_seconds: float, seed: int, corpus: str | None = None,
                 buckets: Sequence[int] | None = None, sort_window: int = 8, shard: tuple[int, int] | None = None,
                 card: CardProtocol | None = None, *, sampling: str = "natural", label_space: str = "emotion"):
        if len(source) == 0:
            raise DataError(f"{_corpus_name(source, corpus)}: no examples to train on")
        if sampling not in SAMPLINGS:
            raise DataError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        self.source, self.batch_size, self.seed, self.card = source, int(batch_size), int(seed), card
        self.corpus = _corpus_name(source, corpus)
        self.max_len = int(round(max_seconds * SAMPLE_RATE))
        self.buckets = tuple(buckets) if buckets else default_buckets(max_seconds)
        if self.buckets[-1] < self.max_len:
            raise DataError(f"the largest bucket ({self.buckets[-1]}) is shorter than max_seconds ({self.max_len})")
        self.sort_window = max(1, int(sort_window))
        self.shard = check_shard(shard, self.batch_size) if shard is not None else None
        self.lengths = source_lengths(source)
        self.n_batches = math.ceil(len(self.lengths) / self.batch_size)
        self.classes = source_classes(source, label_space) if sampling == "balanced" else None
        self.epoch, self.step = 0, 0
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, crop uniforms), both (n_batches, batch_size), of one epoch; a pure function of epoch."""
        rng = np.random.default_rng(derive_seed(self.seed, self.corpus, epoch))
        m = self.n_batches * self.batch_size
        order = (np.resize(rng.permutation(len(self.lengths)), m) if self.classes is None
                 else balanced_order(rng, self.classes, m))
        uniforms = rng.random(m)
        eff = np.minimum(self.lengths[order], self.max_len)
        window = self.sort_window * self.batch_size
        for start in range(0, m, window):
            sl = slice(start, start + window)
            by_len = np.argsort(eff[sl], kind="stable")
            order[sl], uniforms[sl] = order[sl][by_len], uniforms[sl][by_len]
        shuffle = rng.permutation(self.n_batches)
        return order.reshape(self.n_batches, -1)[shuffle], uniforms.reshape(self.n_batches, -1)[shuffle]

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, *self.plan(self.epoch))
        idx, uni = self._plan[1][self.step], self._plan[2][self.step]
        self.step += 1
        if self.step == self.n_batches:
            self.epoch, self.step = self.epoch + 1, 0
        spare = np.maximum(self.lengths[idx] - self.max_len, 0)
        offsets = np.floor(uni * (spare + 1)).astype(np.int64)
        kept = np.minimum(self.lengths[idx], self.max_len)
        return _share(self.corpus, self.source, idx, offsets, kept, self.max_len, self.buckets, self.batch_size,
                      self.shard, self.card)

    def state(self) -> dict[str, int]:
        """Position: the next batch is batch `step` of epoch `epoch`."""
        return {"epoch": self.epoch, "step": self.step, "n": int(len(self.lengths))}

    def load_state(self, state: Mapping[str, int]) -> None:
        """Continue from a saved position."""
        if int(state["n"]) != len(self.lengths):
            raise DataError(f"{self.corpus}: saved state is for {state['n']} examples, this source has "
                            f"{len(self.lengths)}; the data changed, so the batch order cannot be resumed")
        if not 0 <= int(state["step"]) < self.n_batches:
            raise DataError(f"{self.corpus}: saved step {state['step']} outside 0..{self.n_batches - 1}")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


def train_batches(source: Any, batch_size: int, max_seconds: float, seed: int, buckets: Sequence[int] | None = None,
                  corpus: str | None = None, sort_window: int = 8) -> CorpusBatches:
    """Endless shuffled training batches of one source (see CorpusBatches; .state()/.load_state() resume)."""
    return CorpusBatches(source, batch_size, max_seconds, seed, corpus, buckets, sort_window)


def eval_batches(source: Any, batch_size: int, max_seconds: float | None = None,
                 buckets: Sequence[int] | None = None, corpus: str | None = None,
                 crop: int | None = None, shard: tuple[int, int] | None = None,
                 card: CardProtocol | None = None) -> Iterator[Batch]:
    """Every example once, whole (or its first `crop` samples), in length order; the last batch is padded with
    zero-weight rows. Batches are padded to the smallest bucket that fits; an utterance longer than the largest
    bucket gets a width that is a multiple of the largest bucket, so shapes stay few. Buckets default to
    default_buckets(max_seconds or 3.0). shard=(i, n): only rows [i*B/n, (i+1)*B/n) of every batch (see
    CorpusBatches). card: rows as the model card's feature-extractor call makes them (see _assemble)."""
    buckets = tuple(buckets) if buckets else default_buckets(max_seconds or DEFAULT_MAX_SECONDS)
    shard = check_shard(shard, batch_size) if shard is not None else None
    lengths = source_lengths(source)
    order = np.argsort(lengths, kind="stable")
    name = _corpus_name(source, corpus)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        kept = np.minimum(lengths[idx], crop) if crop else lengths[idx]
        yield _share(name, source, idx, np.zeros(len(idx), np.int64), kept, crop, buckets, batch_size, shard, card)


class RoundRobin:
    """One training batch per corpus per step, corpora in sorted order (A, B, C, A, B, C, ...); each corpus
    reshuffles every epoch of its own. state() is small JSON; restore()/load_state() resume exactly. shard=(i, n): this
    process's rows of every global batch (the state is the same on every process). sampling="balanced": every
    corpus's batches draw the classes of `label_space` equally often (CorpusBatches)."""

    def __init__(self, sources: Mapping[str, Any], batch_size: int, max_seconds: float, seed: int,
                 buckets: Sequence[int] | None = None, sort_window: int = 8, shard: tuple[int, int] | None = None,
                 card: CardProtocol | None = None, *, sampling: str = "natural", label_space: str = "emotion"):
        if not sources:
            raise DataError("RoundRobin needs at least one corpus")
        self.names = sorted(sources)
        self.batch_size, self.max_seconds, self.seed = int(batch_size), float(max_seconds), int(seed)
        self.sort_window = int(sort_window)
        self.sampling, self.classes = sampling, label_space if sampling == "balanced" else None
        self.streams = {n: CorpusBatches(sources[n], batch_size, max_seconds, seed, n, buckets, sort_window, shard,
                                         card, sampling=sampling, label_space=label_space)
                        for n in self.names}
        self.buckets = self.streams[self.names[0]].buckets
        self.turn = 0

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        batch = next(self.streams[self.names[self.turn]])
        self.turn = (self.turn + 1) % len(self.names)
        return batch

    def state(self) -> dict[str, Any]:
        """JSON-serialisable position and settings."""
        return {"version": _STATE_VERSION, "seed": self.seed, "batch_size": self.batch_size,
                "max_seconds": self.max_seconds, "buckets": list(self.buckets), "sort_window": self.sort_window,
                "sampling": self.sampling, "classes": self.classes,
                "turn": self.turn, "corpora": {n: s.state() for n, s in self.streams.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from state(); the settings and corpora must match."""
        if state.get("version") != _STATE_VERSION:
            raise DataError(f"RoundRobin state version {state.get('version')!r}, expected {_STATE_VERSION}")
        mine = self.state()
        saved = {**_NATURAL, **state}  # a state saved before sampling was recorded: natural sampling
        for key in ("seed", "batch_size", "max_seconds", "buckets", "sort_window", *_NATURAL):
            if saved[key] != mine[key]:
                raise DataError(f"RoundRobin state has {key}={saved[key]!r}, this iterator {mine[key]!r}")
        if sorted(state["corpora"]) != self.names:
            raise DataError(f"RoundRobin state is for corpora {sorted(state['corpora'])}, not {self.names}")
        for n, s in state["corpora"].items():
            self.streams[n].load_state(s)
        self.turn = int(state["turn"]) % len(self.names)

    @classmethod
    def restore(cls, sources: Mapping[str, Any], state: Mapping[str, Any],
                shard: tuple[int, int] | None = None) -> "RoundRobin":
        """A RoundRobin built with the settings saved in state, at the saved position."""
        saved = {**_NATURAL, **state}
        rr = cls(sources, state["batch_size"], state["max_seconds"], state["seed"], state["buckets"],
                 state["sort_window"], shard, sampling=saved["sampling"], label_space=saved["classes"] or "emotion")
        rr.load_state(state)
        return rr
