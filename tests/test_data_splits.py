"""The three split methods: deterministic for a seed, speaker-independent whenever speakers are known."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exhubert_jax.data.errors import SplitError
from exhubert_jax.data.readers import Utterance
from exhubert_jax.data.splits import assign_splits, auto_method, derive_seed, shared_speakers


def corpus(n_speakers, per_speaker, seed=0, with_speaker=True, split=None):
    rng = np.random.default_rng(seed)
    utts = []
    for s in range(n_speakers):
        for k in range(int(per_speaker[s] if hasattr(per_speaker, "__len__") else per_speaker)):
            utts.append(Utterance(f"/c/s{s:02d}_{k:03d}.wav", str(rng.integers(0, 6)),
                                  f"spk{s:02d}" if with_speaker else None, split))
    return sorted(utts)


@pytest.mark.parametrize("n_speakers", [3, 4, 5, 10, 24, 91])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_speaker_split_is_disjoint_and_complete(n_speakers, seed):
    utts = corpus(n_speakers, np.random.default_rng(n_speakers).integers(5, 40, n_speakers))
    splits = assign_splits(utts, "speaker", seed, key="x")
    assert shared_speakers(utts, splits) == []
    assert set(splits) == {"train", "validation", "test"}
    by_split = {s: {u.speaker for u, t in zip(utts, splits) if t == s} for s in ("train", "validation", "test")}
    assert set.union(*by_split.values()) == {u.speaker for u in utts}
    if n_speakers >= 10:  # enough speakers to come close to 10 % / 10 %
        for s in ("validation", "test"):
            assert 0.04 < splits.count(s) / len(utts) < 0.2


def test_splits_are_deterministic_and_seeded():
    utts = corpus(20, 15)
    a = assign_splits(utts, "speaker", 3, key="c")
    assert a == assign_splits(list(utts), "speaker", 3, key="c")
    assert a != assign_splits(utts, "speaker", 4, key="c")
    assert a != assign_splits(utts, "speaker", 3, key="other-corpus")
    r = assign_splits(utts, "random", 3, key="c")
    assert r == assign_splits(utts, "random", 3, key="c") and r != assign_splits(utts, "random", 4, key="c")


def test_seeds_are_stable_across_processes():
    code = ("from exhubert_jax.data.splits import derive_seed; "
            "print(derive_seed(0, 'emodb', 'speakers'), derive_seed(5, 'x', 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""},
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert [int(x) for x in out] == [derive_seed(0, "emodb", "speakers"), derive_seed(5, "x", 3)]


def test_random_split_is_ten_ten_eighty():
    utts = corpus(1, 200, with_speaker=False)
    splits = assign_splits(utts, "random", 0, key="x")
    assert (splits.count("test"), splits.count("validation"), splits.count("train")) == (20, 20, 160)
    tiny = assign_splits(corpus(1, 3, with_speaker=False), "random", 0)
    assert sorted(tiny) == ["test", "train", "validation"]


def test_own_split():
    utts = corpus(3, 4, split="test")
    assert assign_splits(utts, "own") == ["test"] * 12
    with pytest.raises(SplitError, match="needs a split for every file"):
        assign_splits(corpus(3, 4), "own")


def test_auto_method():
    assert auto_method(corpus(3, 2, split="train")) == "own"
    assert auto_method(corpus(3, 2)) == "speaker"
    assert auto_method(corpus(2, 5)) == "random"
    assert auto_method(corpus(4, 2, with_speaker=False)) == "random"


def test_speaker_split_errors():
    with pytest.raises(SplitError, match="at least 3 speakers.*has 2"):
        assign_splits(corpus(2, 10), "speaker")
    with pytest.raises(SplitError, match="needs a speaker for every file"):
        assign_splits(corpus(5, 3, with_speaker=False), "speaker")
    with pytest.raises(SplitError, match="unknown split method"):
        assign_splits(corpus(5, 3), "by-magic")
    with pytest.raises(SplitError, match="sorted"):
        assign_splits(corpus(5, 3)[::-1], "speaker")


def test_shared_speakers_detects_overlap():
    utts = corpus(3, 2)
    assert shared_speakers(utts, ["train", "test", "train", "train", "validation", "validation"]) == ["spk00"]
