"""Bucketed train/eval batches and the round-robin iterator: order, determinism, exact resume."""

import json

import numpy as np
import pytest

from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.batching import (Batch, RoundRobin, bucket_length, default_buckets, eval_batches,
                                                normalize, train_batches)
from exhubert_jax.data.loading.dataset import open_prepared


class ListSource:
    """In-memory source: distinct lengths, label = i % 6, native index = i % 3."""

    def __init__(self, lengths, corpus="mem", seed=0):
        rng = np.random.default_rng(seed)
        self.corpus = corpus
        self.items = [dict(audio=(0.1 * rng.standard_normal(n) + 0.01).astype(np.float32), label=i % 6,
                           native_index=i % 3) for i, n in enumerate(lengths)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def lengths(n, seed=0, lo=2000, hi=40000):
    return np.random.default_rng(seed).choice(np.arange(lo, hi), n, replace=False)


def assert_same(a: Batch, b: Batch):
    assert a.corpus == b.corpus and a.n_seconds == b.n_seconds
    for field in ("input_values", "attention_mask", "labels", "native_labels", "weights", "indices", "dims"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)


def test_buckets():
    assert default_buckets(3.0) == (16000, 32000, 48000)
    assert default_buckets(1.0, n=2) == (8000, 16000)
    assert [bucket_length(n, (100, 200)) for n in (1, 100, 101, 200, 201, 401)] == [100, 100, 200, 200, 400, 600]
    with pytest.raises(DataError, match="shorter than one frame"):
        default_buckets(0.01)


def test_normalize_matches_wav2vec2_feature_extractor_formula():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 3 + 2
    np.testing.assert_allclose(normalize(x), (x - x.mean()) / np.sqrt(x.var() + 1e-7), rtol=1e-6)


def test_train_batches_shapes_crops_masks_labels():
    src = ListSource(lengths(40))
    it = train_batches(src, batch_size=8, max_seconds=1.5, seed=0)
    by_len = {len(x["audio"]): x for x in src.items}
    for _ in range(10):
        b = next(it)
        assert b.input_values.shape[0] == 8 and b.input_values.shape[1] in (8000, 16000, 24000)
        assert b.input_values.dtype == np.float32 and b.attention_mask.dtype == np.int32
        assert b.labels.dtype == np.int32 and b.native_labels.dtype == np.int32 and (b.weights == 1).all()
        real = b.attention_mask.sum(1)
        assert real.max() <= 24000 and b.input_values.shape[1] == bucket_length(real.max(), it.buckets)
        assert b.n_seconds == real.sum() / 16000
        for row, n in enumerate(real):
            x = b.input_values[row]
            assert (b.attention_mask[row, :n] == 1).all() and (b.attention_mask[row, n:] == 0).all()
            assert (x[n:] == 0).all() and abs(x[:n].mean()) < 1e-3 and abs(x[:n].std() - 1) < 1e-2
            if n < 24000:  # not cropped: the whole utterance, identifiable by its length
                item = by_len[n]
                np.testing.assert_array_equal(x[:n], normalize(item["audio"]))
                assert (b.labels[row], b.native_labels[row]) == (item["label"], item["native_index"])


def test_each_epoch_covers_every_example_and_reshuffles():
    src = ListSource(lengths(30))
    it = train_batches(src, batch_size=8, max_seconds=3.0, seed=1)
    assert it.n_batches == 4
    plans = [it.plan(e)[0] for e in range(3)]
    for p in plans:
        assert p.shape == (4, 8) and set(p.ravel()) == set(range(30))  # 32 slots: 2 filled from the start
    assert not np.array_equal(plans[0], plans[1]) and not np.array_equal(plans[1], plans[2])
    for _ in range(4):
        next(it)
    assert it.state() == {"epoch": 1, "step": 0, "n": 30}


def test_train_batches_are_deterministic_for_a_seed():
    src = ListSource(lengths(25))
    a, b, c = (train_batches(src, 4, 1.0, seed=s) for s in (5, 5, 6))
    xs = [next(a) for _ in range(12)]
    for x in xs:
        assert_same(x, next(b))
    assert any(not np.array_equal(x.input_values, next(c).input_values) for x in xs)


def test_eval_batches_cover_everything_whole():
    lens = list(lengths(21, lo=500, hi=30000)) + [70000]  # one longer than the largest bucket
    src = ListSource(lens)
    batches = list(eval_batches(src, batch_size=4, max_seconds=1.0))
    assert len(batches) == 6
    real = np.concatenate([b.attention_mask.sum(1)[b.weights == 1] for b in batches])
    assert sorted(real) == sorted(lens)  # every utterance once, never cropped
    assert [int(w.sum()) for w in (b.weights for b in batches)] == [4, 4, 4, 4, 4, 2]
    last = batches[-1]
    assert (last.input_values[2:] == 0).all() and (last.attention_mask[2:] == 0).all()
    assert last.input_values.shape[1] == 80000  # 70000 samples: 5 x the largest bucket (16000)
    assert {b.input_values.shape[1] for b in batches[:-1]} <= {5333, 10667, 16000, 32000}
    assert sum(b.n_seconds for b in batches) == pytest.approx(sum(lens) / 16000)


def test_round_robin_order_and_exact_resume():
    sources = {"c": ListSource(lengths(9, 3), "c", 3), "a": ListSource(lengths(14, 1), "a", 1),
               "b": ListSource(lengths(5, 2), "b", 2)}
    rr = RoundRobin(sources, batch_size=4, max_seconds=1.0, seed=11)
    first = [next(rr) for _ in range(9)]
    assert [b.corpus for b in first] == list("abcabcabc")
    for _ in range(7):  # into later epochs of every corpus (b has 2 batches per epoch, a 4, c 3)
        next(rr)
    state = json.loads(json.dumps(rr.state()))
    expected = [next(rr) for _ in range(20)]
    resumed = RoundRobin.restore(sources, state)
    for want in expected:
        assert_same(next(resumed), want)
    again = RoundRobin(sources, 4, 1.0, 11)
    again.load_state(state)
    assert_same(next(again), expected[0])
    fresh = RoundRobin(dict(reversed(list(sources.items()))), 4, 1.0, 11)  # dict order does not matter
    for want in first:
        assert_same(next(fresh), want)


def test_round_robin_state_mismatch_is_refused():
    sources = {"a": ListSource(lengths(10)), "b": ListSource(lengths(6, 1))}
    state = RoundRobin(sources, 4, 1.0, 0).state()
    with pytest.raises(DataError, match="seed=0"):
        RoundRobin(sources, 4, 1.0, 1).load_state(state)
    with pytest.raises(DataError, match="corpora"):
        RoundRobin({"a": sources["a"]}, 4, 1.0, 0).load_state(state)
    with pytest.raises(DataError, match="data changed"):
        RoundRobin.restore({"a": sources["a"], "b": ListSource(lengths(7, 1))}, state)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    prepare_demo(data, n_per_class=1, n_speakers=3, log=lambda m: None)
    return data


class Plain:
    """The same split seen through the generic source protocol only (no read_pcm / num_samples)."""

    def __init__(self, split):
        self.split, self.corpus = split, split.corpus

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split[i]


def test_prepared_splits_batch_like_generic_sources(demo):
    splits = {n: open_prepared(n, demo).split("train") for n in ("demo-a", "demo-b", "demo-c")}
    fast = RoundRobin(splits, 4, 2.0, seed=0)
    slow = RoundRobin({n: Plain(s) for n, s in splits.items()}, 4, 2.0, seed=0)
    for _ in range(6):
        assert_same(next(fast), next(slow))
    test = open_prepared("demo-a", demo).split("test")
    got = list(eval_batches(test, 4))
    assert sum(int(b.weights.sum()) for b in got) == len(test)
    assert {int(x) for b in got for x in b.labels[b.weights == 1]} == set(range(6))


def test_prefetch_gives_the_same_batches_and_exact_positions():
    from exhubert_jax.data.loading.prefetch import Prefetch

    sources = {"a": ListSource(lengths(14, 1), "a", 1), "b": ListSource(lengths(5, 2), "b", 2)}
    plain = RoundRobin(sources, 4, 1.0, seed=3)
    ahead = Prefetch(RoundRobin(sources, 4, 1.0, seed=3), depth=3)
    for _ in range(7):
        assert_same(next(ahead), next(plain))
        assert ahead.state() == plain.state()  # where the consumer is, not the thread that runs ahead
    assert len(ahead.waits) == 7 and all(w >= 0 for w in ahead.waits) and ahead.wait_s == ahead.waits[-1]
    with pytest.raises(DataError, match="seed=3"):  # load_state goes to the wrapped stream, with its checks
        Prefetch(RoundRobin(sources, 4, 1.0, seed=0), depth=2).load_state(ahead.state())
    resumed = Prefetch(RoundRobin(sources, 4, 1.0, seed=3), depth=0)
    resumed.load_state(ahead.state())
    for _ in range(5):
        assert_same(next(resumed), next(plain))
    with pytest.raises(DataError, match="before the first batch"):
        resumed.load_state(plain.state())
    ahead.close()


def test_prefetch_raises_the_streams_error_in_the_consumer():
    from exhubert_jax.data.loading.prefetch import Prefetch

    class Broken:
        def __next__(self):
            raise DataError("corpus x: unreadable")

        def state(self):
            return {}

    with pytest.raises(DataError, match="corpus x: unreadable"):
        next(Prefetch(Broken(), depth=2))


class Imbalanced(ListSource):
    """ListSource with skewed classes: of 60 examples, 40 of class 0, 14 of class 3, 5 of class 4, 1 of class 5
    (none of 1 and 2); native index = class % 2."""

    def __init__(self, corpus="skew", seed=0):
        super().__init__(lengths(60, seed, lo=2000, hi=6000), corpus, seed)
        for item, label in zip(self.items, [0] * 40 + [3] * 14 + [4] * 5 + [5]):
            item["label"], item["native_index"] = label, label % 2


def test_balanced_sampling_draws_every_class_equally_often():
    """Each epoch fills its 63 slots (9 batches of 7) with the 4 classes present, 15 or 16 each: within one of
    uniform per epoch, the extra slots going to classes at random. Over E epochs a class's count is E x 15 plus a
    Binomial(E, 3/4) number of extras, so it stays within 5 standard deviations (5 x sqrt(E x 3/16)) of the mean
    E x 63/4 (a failure by chance has probability below 1e-6); natural sampling stays as skewed as the corpus."""
    src = Imbalanced()
    it = train_batches(src, batch_size=7, max_seconds=0.25, seed=4)
    it_balanced = type(it)(src, 7, 0.25, seed=4, sampling="balanced")
    classes = np.array([item["label"] for item in src.items])
    epochs = 400
    counts = np.zeros((epochs, 6), np.int64)
    for e in range(epochs):
        order, _ = it_balanced.plan(e)
        counts[e] = np.bincount(classes[order.ravel()], minlength=6)
    present = [0, 3, 4, 5]
    assert counts[:, [1, 2]].sum() == 0 and counts.sum(1).tolist() == [63] * epochs
    per_epoch = counts[:, present]
    assert per_epoch.min() == 15 and per_epoch.max() == 16  # within one of uniform in every epoch
    bound = 5 * np.sqrt(epochs * 3 / 16)
    assert np.all(np.abs(per_epoch.sum(0) - epochs * 63 / 4) <= bound), (per_epoch.sum(0), bound)
    # the rare classes' examples all come round, and a batch holds what its plan says
    assert set(np.concatenate([it_balanced.plan(e)[0].ravel() for e in range(3)])) >= set(np.flatnonzero(classes == 4))
    seen = np.concatenate([next(it_balanced).labels for _ in range(2 * it_balanced.n_batches)])
    assert np.array_equal(np.bincount(seen, minlength=6), counts[0] + counts[1])
    natural = np.bincount(classes[it.plan(0)[0].ravel()], minlength=6)
    assert natural[0] >= 40 and natural[5] <= 2


def test_balanced_sampling_follows_the_label_space_trained_on():
    src = Imbalanced()
    it = train_batches(src, 7, 0.25, seed=0)
    native = type(it)(src, 7, 0.25, seed=0, sampling="balanced", label_space="native")
    nat = np.array([item["native_index"] for item in src.items])
    counts = np.bincount(nat[native.plan(0)[0].ravel()], minlength=2)
    assert sorted(counts.tolist()) == [31, 32]  # 46 of native index 0, 14 of 1: now a half each
    with pytest.raises(DataError, match="sampling must be one of natural, balanced"):
        type(it)(src, 7, 0.25, seed=0, sampling="uniform")


def test_balanced_round_robin_resumes_exactly_and_its_state_records_the_sampling():
    sources = {"a": Imbalanced("a", 1), "b": ListSource(lengths(9, 2, lo=2000, hi=6000), "b", 2)}
    rr = RoundRobin(sources, 4, 0.25, seed=5, sampling="balanced")
    for _ in range(23):  # into later epochs of both corpora
        next(rr)
    state = json.loads(json.dumps(rr.state()))
    assert (state["sampling"], state["classes"]) == ("balanced", "emotion")
    expected = [next(rr) for _ in range(20)]
    again = RoundRobin(sources, 4, 0.25, 5, sampling="balanced")
    again.load_state(state)
    for resumed in (RoundRobin.restore(sources, state), again):
        for want in expected:
            assert_same(next(resumed), want)
    with pytest.raises(DataError, match="sampling='balanced', this iterator 'natural'"):
        RoundRobin(sources, 4, 0.25, 5).load_state(state)
    old = {k: v for k, v in RoundRobin(sources, 4, 0.25, 5).state().items() if k not in ("sampling", "classes")}
    RoundRobin(sources, 4, 0.25, 5).load_state(old)  # a position saved before sampling was recorded: natural
    with pytest.raises(DataError, match="sampling='natural', this iterator 'balanced'"):
        RoundRobin(sources, 4, 0.25, 5, sampling="balanced").load_state(old)
