"""Label distributions (soft labels) in the data: the manifest's label_dist column, the per-annotator files of IEMOCAP,
MSP-Podcast and CREMA-D in their published formats, the mapping through the label table (unmapped votes dropped, the
rest renormalised), turns without a majority kept on request without moving any other utterance's split, the
prepared record and index, and the batches' distributions and soft targets."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from exhubert_jax.data.errors import DataError, ManifestError, PreparedDataError, UnknownLabelError
from exhubert_jax.data.loading.batching import eval_batches
from exhubert_jax.data.loading.dataset import open_prepared, parse_example
from exhubert_jax.data.loading.devices import batch_arrays
from exhubert_jax.data.prepare import builders
from exhubert_jax.data.prepare.command import main
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.prepare.splits import with_soft_only
from exhubert_jax.data.sources import readers as R
from exhubert_jax.data.sources.labels import CLASSES, class_index, load_label_table
from exhubert_jax.data.sources.soft_labels import (NO_MAJORITY, class_distribution, native_distribution,
                                                   parse_label_dist)
from exhubert_jax.data.sources.utterances import map_labels
from tests.test_data_prepare import make_corpus, wav

QUIET = dict(progress=False, log=lambda m: None)


def dist(**mass: float) -> tuple:
    """A 6-class distribution from {class name: probability}."""
    out = [0.0] * len(CLASSES)
    for name, p in mass.items():
        out[class_index(name)] = p
    return tuple(out)


# ---------------------------------------------------------------------------------------------- the manifest column


def test_label_dist_cells_parse_to_votes():
    assert parse_label_dist("angry:3; neutral:1", "m.csv", 2) == (("angry", 3.0), ("neutral", 1.0))
    assert parse_label_dist({"sad": 1, "angry": 0}, "m.jsonl", 1) == (("sad", 1.0),)  # JSONL: an object
    assert parse_label_dist("  ", "m.csv", 2) is None and parse_label_dist(None, "m.csv", 2) is None


@pytest.mark.parametrize("cell, problem", [
    ("angry 3", "'angry 3' is not label:weight"), ("angry:3;angry:1", "label 'angry' is given twice"),
    ("angry:-1", "weight of 'angry' '-1' is not a finite number >= 0"),
    ("angry:x", "weight of 'angry' 'x' is not a finite number >= 0"), ("angry:nan", "not a finite number"),
    ("angry:0;sad:0", "the weights sum to 0"), (":3", "':3' is not label:weight"),
])
def test_a_malformed_label_dist_names_file_line_and_problem(tmp_path, cell, problem):
    m = tmp_path / "m.csv"
    m.write_text(f"path,label,label_dist\na.wav,angry,\nb.wav,sad,{cell}\n")
    with pytest.raises(ManifestError, match=re.escape(f"{m}:3: label_dist: ") + ".*" + re.escape(problem)):
        R.read_manifest(m)


def test_the_prepare_command_says_it_in_one_line(tmp_path, capsys):
    wav(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("path,label,label_dist\na.wav,angry,angry:x\n")
    assert main(["--corpus", "mine", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"error: manifest {tmp_path / 'm.csv'}:2: label_dist: weight of 'angry' 'x' is not a finite "
                    "number >= 0")]


def test_a_row_with_votes_but_no_label_has_no_majority(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,label_dist\na.wav,angry:1;sad:1\nb.wav,\n")
    with pytest.raises(ManifestError, match=r"m.csv:3: empty 'path' or 'label' .*or a label_dist"):
        R.read_manifest(m)
    m.write_text("path,label_dist\na.wav,angry:1;sad:1\n")
    (u,) = R.read_manifest(m)
    assert (u.native_label, u.majority, u.votes) == (NO_MAJORITY, False, (("angry", 1.0), ("sad", 1.0)))


# ----------------------------------------------------------------------------------- mapping into the label spaces


def test_votes_map_through_the_table_and_dropped_ones_renormalise():
    table = load_label_table()
    votes = (("ang", 0.5), ("fru", 0.5), ("neu", 1.0), ("oth", 2.0))  # oth: the table drops it
    assert class_distribution(table, "iemocap", votes) == dist(high_negative=0.5, low_neutral=0.5)
    # the native head: labels the table drops, or that no example carries, map to nothing
    assert native_distribution(table, "iemocap", votes, ["ang", "neu", "sad"]) == pytest.approx((1 / 3, 2 / 3, 0.0))
    assert class_distribution(table, "iemocap", (("oth", 1.0), ("xxx", 2.0))) is None  # nothing left
    with pytest.raises(UnknownLabelError, match="iemocap: turn.wav: unknown label 'angr'"):
        class_distribution(table, "iemocap", (("angr", 1.0),), "turn.wav")


def test_turns_without_a_majority_are_dropped_unless_kept_with_their_votes():
    table = load_label_table()
    utts = [R.Utterance("a.wav", "ang"), R.Utterance("b.wav", "xxx", votes=(("ang", 1.0),), majority=False),
            R.Utterance("c.wav", "xxx", majority=False)]  # no votes: nothing to train on
    kept, dropped, _ = map_labels(table, "iemocap", utts)
    assert [u.path for u, _ in kept] == ["a.wav"] and dropped == {"xxx": 2}
    kept, dropped, _ = map_labels(table, "iemocap", utts, keep_no_majority=True)
    assert [(u.path, r.index) for u, r in kept] == [("a.wav", 3), ("b.wav", None)] and dropped == {"xxx": 1}


# -------------------------------------------------------------------------------- the corpora's annotation files


IEMOCAP_TXT = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nC-E4:\tSadness;\t()\nC-F1:\tAnger;\t(curious)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\nA-F1:\tval 3; act 2; dom  1;\t()\n\n"
    "[10.0100 - 11.3925]\tSes01F_impro01_M001\txxx\t[2.0000, 3.5000, 3.5000]\n"
    "C-E1:\tFrustration; Anger;\t()\nC-E3:\tNeutral;\t()\nC-E4:\tOther;\t(sarcastic)\nC-M1:\tHappiness;\t()\n"
    "A-E4:\tval 1; act 4; dom  5;\t(threatening, belligerent)\n")


def iemocap_tree(root, text: str = IEMOCAP_TXT):
    """One EmoEvaluation file of Session 1, as IEMOCAP ships it."""
    ev = root / "Session1/dialog/EmoEvaluation"
    ev.mkdir(parents=True)
    (ev / "Ses01F_impro01.txt").write_text(text)
    return ev / "Ses01F_impro01.txt"


def test_iemocap_votes_are_the_external_evaluators_categories(tmp_path):
    iemocap_tree(tmp_path)
    neu, xxx = R.read_iemocap(tmp_path)
    assert neu.votes == (("neu", 2.0), ("sad", 1.0)) and neu.majority  # C-F1, the actor's own view, left out
    # an evaluator naming two categories gives each half a vote
    assert xxx.votes == (("ang", 0.5), ("fru", 0.5), ("neu", 1.0), ("oth", 1.0)) and not xxx.majority
    table = load_label_table()
    assert class_distribution(table, "iemocap", xxx.votes) == dist(high_negative=0.5, low_neutral=0.5)


def test_an_unknown_iemocap_category_names_file_and_line(tmp_path):
    bored = IEMOCAP_TXT.replace("C-E3:\tNeutral;\t()\nC-E4:\tOther", "C-E3:\tBored;\t()\nC-E4:\tOther")
    txt = iemocap_tree(tmp_path, bored)
    with pytest.raises(ManifestError, match=re.escape(f"{txt}:13: unknown category 'Bored' of an evaluator")):
        R.read_iemocap(tmp_path)


MSP_CONSENSUS = ("FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
                 "MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train\n"
                 "MSP-PODCAST_0001_0019.wav,X,6.4,1.6,5.8,127,Female,Train\n"
                 "MSP-PODCAST_0002_0033.wav,H,5.0,6.2,4.0,128,Male,Test1\n")
MSP_DETAILED = ("FileName,EmoDetail\n"  # the releases since 1.7: one row per annotator
                'MSP-PODCAST_0001_0008.wav,"WORKER00014; Neutral; Neutral; A:4.0; V:4.0; D:4.0;"\n'
                'MSP-PODCAST_0001_0008.wav,"WORKER00022; Happy; Happy,Amused; A:5.0; V:5.0; D:4.0;"\n'
                'MSP-PODCAST_0001_0008.wav,"WORKER00031; Neutral; ; A:4.0; V:4.0; D:5.0;"\n'
                'MSP-PODCAST_0001_0019.wav,"WORKER00014; Angry; Angry,Frustrated; A:6.0; V:2.0; D:6.0;"\n'
                'MSP-PODCAST_0001_0019.wav,"WORKER00040; Other-Curious; Confused; A:5.0; V:3.0; D:4.0;"\n'
                'MSP-PODCAST_0001_0019.wav,"WORKER00041; Contempt; Annoyed; A:4.0; V:2.0; D:5.0;"\n')


def msp_tree(root, detailed: str = MSP_DETAILED):
    """labels_consensus.csv and labels_detailed.csv in Labels/."""
    (root / "Labels").mkdir(parents=True)
    (root / "Labels/labels_consensus.csv").write_text(MSP_CONSENSUS)
    (root / "Labels/labels_detailed.csv").write_text(detailed)
    return root / "Labels/labels_detailed.csv"


@pytest.mark.parametrize("detailed", [
    MSP_DETAILED,
    ("FileName,Workers,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom\n"  # release 1.6's columns
     "MSP-PODCAST_0001_0008.wav,WORKER00014,Neutral,Neutral,4,4,4\nMSP-PODCAST_0001_0008.wav,WORKER00022,Happy,,5,5,4\n"
     "MSP-PODCAST_0001_0008.wav,WORKER00031,N,,4,4,5\nMSP-PODCAST_0001_0019.wav,WORKER00014,Angry,,6,2,6\n"
     "MSP-PODCAST_0001_0019.wav,WORKER00040,Other,,5,3,4\nMSP-PODCAST_0001_0019.wav,WORKER00041,Contempt,,4,2,5\n"),
])
def test_msp_podcast_votes_are_each_annotators_primary_emotion(tmp_path, detailed):
    msp_tree(tmp_path, detailed)
    by_name = {u.path.split("/")[-1]: u for u in R.read_msp_podcast(tmp_path)}
    n, x, h = (by_name[f"MSP-PODCAST_{k}.wav"] for k in ("0001_0008", "0001_0019", "0002_0033"))
    assert n.votes == (("H", 1.0), ("N", 2.0)) and n.majority
    assert x.votes == (("A", 1.0), ("C", 1.0), ("O", 1.0)) and not x.majority  # X: no majority
    assert h.votes is None and h.majority  # no annotations listed: no distribution
    table = load_label_table()
    assert class_distribution(table, "msp-podcast", x.votes) == dist(high_negative=0.5, low_negative=0.5)


def test_bad_msp_podcast_annotations_name_file_and_line(tmp_path):
    path = msp_tree(tmp_path, MSP_DETAILED.replace("Contempt; Annoyed", "Bored; Annoyed"))
    with pytest.raises(ManifestError, match=re.escape(f"{path}:7: unknown primary emotion 'Bored'")):
        R.read_msp_podcast(tmp_path)
    path.write_text(MSP_DETAILED.replace("EmoDetail", "Detail"))
    with pytest.raises(ManifestError, match="labels_detailed.csv:1: missing column.*EmoDetail"):
        R.read_msp_podcast(tmp_path)
    path.write_text("FileName,EmoDetail\nMSP-PODCAST_0001_0008.wav,WORKER00014\n")
    with pytest.raises(ManifestError, match=r"labels_detailed.csv:2: EmoDetail 'WORKER00014' is not"):
        R.read_msp_podcast(tmp_path)


CREMA_VOTES = ('"","A","D","F","H","N","S","fileName","numResponses","agreement","emoVote"\n'
               '"100001",7,1,0,0,2,0,"1001_DFA_ANG_XX",10,0.7,"A"\n'
               '"100002",0,0,0,6,4,0,"1091_IEO_HAP_HI",10,0.6,"H"\n'
               '"200001",0,0,0,10,0,0,"1001_DFA_ANG_XX",10,1,"H"\n'  # the face alone: not read
               '"300001",5,0,0,0,5,0,"1001_DFA_ANG_XX",10,0.5,"A:N"\n')


def crema_tree(root, votes: str = CREMA_VOTES):
    """AudioWAV/ with two clips and processedResults/tabulatedVotes.csv."""
    for name in ("1001_DFA_ANG_XX", "1091_IEO_HAP_HI"):
        (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
        (root / f"AudioWAV/{name}.wav").write_bytes(b"")
    (root / "processedResults").mkdir()
    (root / "processedResults/tabulatedVotes.csv").write_text(votes)
    return root / "processedResults/tabulatedVotes.csv"


def test_crema_d_votes_are_the_audio_only_ratings(tmp_path):
    crema_tree(tmp_path)
    ang, hap = R.read_crema_d(tmp_path)
    assert ang.votes == (("ANG", 7.0), ("DIS", 1.0), ("NEU", 2.0)) and hap.votes == (("HAP", 6.0), ("NEU", 4.0))
    table = load_label_table()
    assert class_distribution(table, "crema-d", hap.votes) == dist(high_positive=0.6, low_neutral=0.4)


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace('"S",', '"Sad",'), ":1: missing column(s) S"),
    (lambda t: t.replace('"100002",0,0,0,6', '"100002",0,0,0,six'), ":3: count H 'six' is not a finite number >= 0"),
    (lambda t: t.replace('"100002",0,0,0,6,4,0,"1091_IEO_HAP_HI"', '"100002",0,0,0,6,4,0,"1001_DFA_ANG_XX"'),
     ":3: 1001_DFA_ANG_XX has a second audio-only row"),
    (lambda t: t.replace('"200001"', '"row"'), ":4: row id 'row' is not a number"),
])
def test_bad_crema_d_votes_name_file_and_line(tmp_path, edit, problem):
    path = crema_tree(tmp_path, edit(CREMA_VOTES))
    with pytest.raises(ManifestError, match=re.escape(f"{path}{problem}")):
        R.read_crema_d(tmp_path)


def test_a_latin1_annotation_file_is_one_line_with_the_command_that_converts_it(tmp_path):
    path = crema_tree(tmp_path)
    path.write_bytes(CREMA_VOTES.replace("1091_IEO_HAP_HI", "1091_IEO_HAP_HÏ").encode("latin-1"))
    with pytest.raises(ManifestError, match=re.escape(f"not UTF-8 text (byte 0xcf") + ".*" +
                       re.escape(f"iconv -f latin1 -t utf-8 {path}")):
        R.read_crema_d(tmp_path)


# ------------------------------------------------------------------------------------- prepared corpora and batches


def soft_corpus(root):
    """A manifest corpus of 4 speakers with label distributions on some rows and one row without a majority."""
    make_corpus(root, n_speakers=4, per_speaker=4)
    rows = (root / "manifest.csv").read_text().splitlines()[1:]
    cells = ["angry:2;sad:1", "neutral:1;other:1", ""]  # other: dropped by the table, the rest renormalised
    lines = [f"{r},{cells[i % 3]}" for i, r in enumerate(rows)]
    wav(root / "s0/nomajority.wav", seconds=0.3)
    lines.append("s0/nomajority.wav,,spk0,happy:1;sad:1")
    (root / "m.csv").write_text("path,label,speaker,label_dist\n" + "\n".join(lines) + "\n")
    return root / "m.csv"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The soft corpus prepared as it is (out/) and with --keep-no-majority (kept/)."""
    root = tmp_path_factory.mktemp("soft")
    manifest = soft_corpus(root / "src")
    for out, keep in (("out", False), ("kept", True)):
        prepare_corpus("toy", out=root / out, manifest=manifest, split_method="speaker", keep_no_majority=keep,
                       **QUIET)
    return root


def test_a_kept_turn_moves_no_other_and_has_no_hard_label(prepared):
    plain, kept = open_prepared("toy", prepared / "out"), open_prepared("toy", prepared / "kept")
    assert plain.info["dropped"] == {NO_MAJORITY: 1} and kept.info["dropped"] == {}
    assert kept.native_labels == plain.native_labels == ("angry", "happy", "neutral", "sad")
    assert kept.info["label_distributions"]["n_no_majority"] == 1 and "--keep-no-majority" in kept.command
    for name in plain.splits:
        a, b = plain.split(name), kept.split(name)
        fields = [f["path"] for f in a.utterance_fields()]
        hard = b.hard_labelled()
        assert [f["path"] for f in hard.utterance_fields()] == fields  # the same utterances, in the same splits
        assert np.array_equal(hard.labels, a.labels) and np.array_equal(hard.dists, a.dists)
    train = kept.split("train")
    (row,) = np.flatnonzero(train.labels < 0)
    assert train.native_indices[row] == -1 and train.hard_labelled() is not train
    assert np.allclose(train.dists[row], dist(low_positive=0.0, high_positive=0.5, low_negative=0.5))
    assert np.allclose(train.native_dists[row], (0.0, 0.5, 0.0, 0.5))
    assert train[int(row)]["label"] == -1
    assert plain.split("validation").hard_labelled() is plain.split("validation")


def test_the_record_carries_the_distributions_as_tfds_reads_them(prepared):
    corpus = open_prepared("toy", prepared / "kept")
    features = corpus.builder.info.features
    raw = corpus.builder.as_data_source(split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    split = corpus.split("train")
    for i in range(len(raw)):
        want, got = features.deserialize_example_np(raw[i]), parse_example(raw[i])
        assert set(got) == set(want) and got["label"] == want["label"] == split.labels[i]
        assert got["native_label"] == want["native_label"] == split.native_indices[i]
        for key, index in (("label_dist", split.dists), ("native_label_dist", split.native_dists)):
            assert np.array_equal(got[key], want[key]) and np.allclose(got[key], index[i])
    index = json.loads((corpus.version_dir / "metadata.json").read_text())["index"]["train"]
    assert len(index["dist"]) == len(split) and [1, 0.5] in index["native_dist"][int(np.argmin(split.labels))]


def test_a_corpus_without_votes_has_no_distributions(tmp_path):
    prepare_corpus("plain", out=tmp_path / "out", manifest=make_corpus(tmp_path / "src"), **QUIET)
    split = open_prepared("plain", tmp_path / "out").split("train")
    assert split.dists is None and split.native_dists is None
    batch = next(iter(eval_batches(split, 4)))
    assert batch.dists is None and batch.native_dists is None
    assert "soft_targets" not in batch_arrays(batch)  # the default arrays
    soft = batch_arrays(batch, soft_classes=6)["soft_targets"]  # without distributions: one-hot labels
    assert np.array_equal(soft, np.eye(6, dtype=np.float32)[batch.labels] * (batch.weights > 0)[:, None])


def test_batches_carry_distributions_and_soft_targets_fall_back_to_one_hot(prepared):
    split = open_prepared("toy", prepared / "kept").split("train")
    batches = list(eval_batches(split, 4))
    batch = next(b for b in batches if (b.indices < 0).any() and (b.labels[b.indices >= 0] >= 0).any())
    real = batch.indices >= 0
    assert np.array_equal(batch.dists[real], split.dists[batch.indices[real]]) and not batch.dists[~real].any()
    assert np.array_equal(batch.native_dists[real], split.native_dists[batch.indices[real]])
    arrays = batch_arrays(batch, soft_classes=6)
    soft, has = arrays["soft_targets"], batch.dists.sum(1) > 0
    assert np.array_equal(soft[has], batch.dists[has])
    assert np.array_equal(soft[~has], np.eye(6, dtype=np.float32)[batch.labels[~has]] * real[~has, None])
    assert np.allclose(soft[real].sum(1), 1.0) and not soft[~real].any()
    native = batch_arrays(batch, "native", soft_classes=4)["soft_targets"]
    assert np.array_equal(native[has], batch.native_dists[has])
    no_label = next(b for b in batches if (b.labels[b.indices >= 0] < 0).any())
    row = int(np.flatnonzero((no_label.labels < 0) & (no_label.indices >= 0))[0])
    assert np.allclose(batch_arrays(no_label, soft_classes=6)["soft_targets"][row], split.dists[no_label.indices[row]])
    with pytest.raises(DataError, match="its label distributions have 4 classes, the head 6"):
        batch_arrays(batch, "native", soft_classes=6)


def test_kept_turns_go_to_their_own_split_else_their_speakers_else_train():
    U = R.Utterance
    utts = [U("a.wav", "x", "s1"), U("b.wav", "x", "s1", majority=False), U("c.wav", "x", "s2"),
            U("d.wav", "x", "s3", "test", majority=False), U("e.wav", "x", None, majority=False)]
    hard = [u.majority for u in utts]
    assert with_soft_only(utts, hard, ["validation", "test"]) == ["validation", "validation", "test", "train",
                                                                  "train"]
    assert with_soft_only(utts, hard, ["validation", "test"], own=True)[3] == "test"


def test_a_corpus_prepared_before_distributions_is_refused_with_the_command_to_prepare_it_again(tmp_path,
                                                                                                 monkeypatch):
    manifest = make_corpus(tmp_path / "src")
    with monkeypatch.context() as patch:
        patch.setattr(builders, "SCHEMA", 1)  # what the code before label distributions wrote
        prepare_corpus("old", out=tmp_path / "out", manifest=manifest, **QUIET)
    with pytest.raises(PreparedDataError, match=r"prepared as version 1\.\d+\.\d+, this code reads "
                       rf"{builders.SCHEMA}\.\d+\.\d+ \(the dataset schema changed since\); prepare it again: python"):
        open_prepared("old", tmp_path / "out")
    prepare_corpus("old", out=tmp_path / "out", manifest=manifest, **QUIET)  # the command rebuilds it
    assert open_prepared("old", tmp_path / "out").record["version"].startswith(f"{builders.SCHEMA}.")


def test_the_prepare_command_keeps_them_on_request(tmp_path, capsys):
    manifest = soft_corpus(tmp_path / "src")
    assert main(["--corpus", "toy", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--no-progress",
                 "--split-method", "speaker", "--keep-no-majority"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_dropped"] == 0 and summary["n_examples"] == 17
    corpus = open_prepared("toy", tmp_path / "out")
    assert corpus.command.endswith("--keep-no-majority") and (corpus.split("train").labels == -1).sum() == 1
