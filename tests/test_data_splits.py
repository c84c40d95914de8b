"""The three split methods: deterministic for a seed, speaker-independent whenever speakers are known."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exhubert_jax.data.errors import SplitError
from exhubert_jax.data.prepare.splits import (assign_splits, auto_method, derive_seed, kfold_assign, kfold_splits,
                                              parse_kfold, shared_speakers, stratified_holdout)
from exhubert_jax.data.sources.readers import Utterance


KFOLD_CASE = (7, [12, 3, 9, 9, 20, 1, 6])  # speakers, utterances per speaker


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
    code = ("from exhubert_jax.data.prepare.splits import derive_seed, kfold_assign; from tests.test_data_splits import "
            "KFOLD_CASE, corpus; print(derive_seed(0, 'emodb', 'speakers'), derive_seed(5, 'x', 3)); "
            "print(*kfold_assign(corpus(*KFOLD_CASE), 3, 'x'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""},
                         cwd=Path(__file__).resolve().parents[1]).stdout.splitlines()
    assert [int(x) for x in out[0].split()] == [derive_seed(0, "emodb", "speakers"), derive_seed(5, "x", 3)]
    assert [int(x) for x in out[1].split()] == kfold_assign(corpus(*KFOLD_CASE), 3, "x")  # k-fold too


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


def fold_sets(utts, k, corpus_name=""):
    folds = kfold_assign(utts, k, corpus_name)
    return folds, [kfold_splits(utts, folds, f, 0, corpus_name) for f in range(k)]


@pytest.mark.parametrize("n_speakers,k", [(4, 2), (6, 5), (10, 5), (24, 10), (91, 5)])
def test_kfold_is_speaker_disjoint_covers_every_utterance_once_and_is_balanced(n_speakers, k):
    per = np.random.default_rng(n_speakers).integers(5, 40, n_speakers)
    utts = corpus(n_speakers, per)
    folds, splits = fold_sets(utts, k, "x")
    tested = [sum(s[i] == "test" for s in splits) for i in range(len(utts))]
    assert tested == [1] * len(utts)  # every utterance is test in exactly one fold
    for f, split in enumerate(splits):
        assert [s == "test" for s in split] == [g == f for g in folds]
        assert shared_speakers(utts, split) == []  # test, validation and train speakers are disjoint
        assert {"train", "validation", "test"} == set(split)
    loads = np.bincount(folds, minlength=k)
    assert loads.max() - loads.min() <= per.max()  # greedy balance: within one speaker's utterances


def test_kfold_is_stable_across_runs():
    # largest first to the lightest fold: 04 | 00 | 02, 03 -> 2, 06 -> 1, 01 -> 1 (tie: lower fold), 05 -> 2;
    # then numbered by their first speaker: {00, 01, 06} 20 files, {02, 03, 05} 19, {04} 20
    expected = {"spk00": 0, "spk01": 0, "spk06": 0, "spk02": 1, "spk03": 1, "spk05": 1, "spk04": 2}
    folds = kfold_assign(corpus(*KFOLD_CASE), 3, "x")
    assert {u.speaker: f for u, f in zip(corpus(*KFOLD_CASE), folds)} == expected


def test_iemocap_sessions_are_its_five_folds():
    utts = sorted(Utterance(f"/i/Ses0{s}{g}_{k}.wav", "neu", f"Ses0{s}{g}") for s in range(1, 6) for g in "FM"
                  for k in range(10 + 3 * s))
    folds, splits = fold_sets(utts, 5, "iemocap")
    assert {(u.speaker[:5], f) for u, f in zip(utts, folds)} == {(f"Ses0{i + 1}", i) for i in range(5)}
    assert all(shared_speakers(utts, s) == [] for s in splits)


def test_kfold_refuses_corpora_without_speakers_naming_them():
    with pytest.raises(SplitError, match="emonet-corpus: speaker-independent k-fold needs a speaker"):
        kfold_assign(corpus(4, 3, with_speaker=False), 2, "emonet-corpus")
    with pytest.raises(SplitError, match="x: 5 folds need at least 5 speakers.*has 3"):
        kfold_assign(corpus(3, 3), 5, "x")
    utts = corpus(3, [10, 1, 1])
    with pytest.raises(SplitError, match="fold 2 leaves 1 speaker"):
        fold_sets(utts, 2, "x")
    for bad in ("kfold", "kfold:1", "kfold:x", "kfolds:3"):
        with pytest.raises(SplitError, match="use kfold:K with K >= 2"):
            parse_kfold(bad)
    assert parse_kfold("kfold:5") == 5 and parse_kfold("speaker") is None


def test_stratified_holdout_keeps_label_proportions():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 5 + ["d"]
    held = stratified_holdout(labels, 0.2, seed=3, key="f1")
    picked = [lab for lab, h in zip(labels, held) if h]
    assert (picked.count("a"), picked.count("b"), picked.count("c"), picked.count("d")) == (10, 4, 1, 0)
    assert held == stratified_holdout(labels, 0.2, seed=3, key="f1") != stratified_holdout(labels, 0.2, 4, "f1")
