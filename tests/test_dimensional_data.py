"""Dimensional labels in the data: IEMOCAP's [V, A, D] lines and MSP-Podcast's labels CSV in their published formats,
manifest columns, bad ratings named by file and line, the prepared index and metadata, the version digest."""

from __future__ import annotations

import re

import numpy as np
import pytest

from exhubert_jax.data.errors import ManifestError
from exhubert_jax.data.prepare import builders
from exhubert_jax.data.sources import dimensions, readers as R
from exhubert_jax.data.sources.corpora import get_corpus
from exhubert_jax.data.sources.labels import CLASSES, load_label_table


def iemocap_tree(root, line: str = "[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]"):
    ev = root / "Session1/dialog/EmoEvaluation"
    ev.mkdir(parents=True)
    (ev / "Ses01F_impro01.txt").write_text(
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n" + line + "\n")
    return ev / "Ses01F_impro01.txt"


def test_iemocap_valence_activation_dominance_on_0_1(tmp_path):
    iemocap_tree(tmp_path)
    utts = R.read_iemocap(tmp_path)
    # valence first in the file, stored as (arousal, valence, dominance); 1-5 -> (x - 1) / 4
    assert [u.dims for u in utts] == [(0.375, 0.375, 0.375), (0.625, 0.25, 0.625)]


@pytest.mark.parametrize("bad, problem", [("[2.0000, 6.5000, 3.0000]", "outside the scale 1-5"),
                                          ("[2.0000, 3.5000]", "expected [valence, activation, dominance]"),
                                          ("[2.0000, x, 3.0000]", "not a number")])
def test_iemocap_bad_ratings_name_file_and_line(tmp_path, bad, problem):
    txt = iemocap_tree(tmp_path, f"[1.0 - 2.0]\tSes01F_impro01_M001\tfru\t{bad}")
    with pytest.raises(ManifestError, match=re.escape(f"{txt}:7: ") + ".*" + re.escape(problem)):
        R.read_iemocap(tmp_path)


MSP_CSV = ("FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
           "MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train\n"
           "MSP-PODCAST_0001_0019.wav,A,6.4,1.6,5.8,127,Female,Development\n"
           "MSP-PODCAST_0002_0033.wav,H,5.0,6.2,4.0,Unknown,Unknown,Test1\n"
           "MSP-PODCAST_0003_0001.wav,S,2.0,2.4,3.0,455,Male,Test2\n")


def test_msp_podcast_labels_and_own_split(tmp_path):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text(MSP_CSV)
    (tmp_path / "Audios").mkdir()
    (tmp_path / "Audios/MSP-PODCAST_0001_0008.wav").write_bytes(b"")
    utts = R.read_msp_podcast(tmp_path)
    got = [(u.path.split("/")[-1], u.native_label, u.speaker, u.split) for u in utts]
    assert got == [("MSP-PODCAST_0001_0008.wav", "N", "127", "train"),
                   ("MSP-PODCAST_0001_0019.wav", "A", "127", "validation"),
                   ("MSP-PODCAST_0002_0033.wav", "H", None, "test")]  # Test2 is not read
    assert utts[1].dims == pytest.approx(((6.4 - 1) / 6, (1.6 - 1) / 6, (5.8 - 1) / 6))
    table = load_label_table()
    assert [table.lookup("msp-podcast", u.native_label, u.path).target for u in utts] == [
        "low_neutral", "high_negative", "high_positive"]
    (tmp_path / "Labels/labels_consensus.csv").write_text(MSP_CSV.replace("4.2,4.0", "4.2,7.5"))
    with pytest.raises(ManifestError, match=r"labels_consensus.csv:2: valence 7.5 is outside the scale 1-7"):
        R.read_msp_podcast(tmp_path)
    (tmp_path / "Labels/labels_consensus.csv").write_text(MSP_CSV.replace("EmoDom,", "Dom,"))
    with pytest.raises(ManifestError, match="missing column.*EmoDom"):
        R.read_msp_podcast(tmp_path)


def test_manifest_dimension_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,label,arousal,valence,dominance\na.wav,angry,0.9,0.1,0.8\nb.wav,sad,0.2,,\n")
    utts = R.read_manifest(m)
    assert [u.dims for u in utts] == [(0.9, 0.1, 0.8), (0.2, None, None)]
    m.write_text("path,label,arousal\na.wav,angry,1.5\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: arousal 1.5 is outside the scale 0-1"):
        R.read_manifest(m)
    m.write_text("path,label\na.wav,angry\n")
    assert R.read_manifest(m)[0].dims is None


@pytest.mark.parametrize("name,value", [("RATING_RULE_VERSION", 2), ("AROUSAL_HIGH", 0.6),
                                        ("SCALES", {**dimensions.SCALES, "iemocap": (0.0, 5.0)})])
def test_version_digest_covers_the_dimension_rules(monkeypatch, name, value):
    entry = get_corpus("iemocap")
    before = builders.corpus_version(entry)
    monkeypatch.setattr(dimensions, name, value)
    assert builders.corpus_version(entry) != before


def test_prepared_demo_carries_ratings_and_their_scale(tmp_path):
    from exhubert_jax.data.demo.synthetic import DIMS_CENTRE, prepare_demo
    from exhubert_jax.data.loading.batching import eval_batches
    from exhubert_jax.data.loading.dataset import open_prepared

    prepare_demo(tmp_path, n_per_class=1, n_speakers=3, log=lambda m: None)
    corpus = open_prepared("demo-a", tmp_path)
    assert corpus.info["dimensions"] == {"names": list(dimensions.DIMENSIONS), "scale": [0.0, 1.0],
                                         "stored_as": [0.0, 1.0], "n_labelled": 18}
    split = corpus.split("train")
    centres = np.asarray([DIMS_CENTRE[c] for c in CLASSES])
    assert np.all(np.abs(split.dims - centres[split.labels]) < 0.3)  # each around its class's point
    batch = next(iter(eval_batches(split, 4)))
    real = batch.weights > 0
    assert np.array_equal(batch.dims[real], split.dims[batch.indices[real]])
    assert split[int(batch.indices[0])]["dims"] == pytest.approx(tuple(split.dims[batch.indices[0]]))


def test_a_rated_manifest_without_labels_joins_the_six_classes(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,arousal,valence\na.wav,0.8,0.1\nb.wav,0.2,0.5\nc.wav,0.6,0.9\n")
    utts = R.read_manifest(m)
    assert [u.native_label for u in utts] == ["high_negative", "low_neutral", "high_positive"]
    assert [load_label_table().lookup("mine", u.native_label).target for u in utts] == [u.native_label for u in utts]
    m.write_text("path,arousal,valence\na.wav,0.8,\n")
    with pytest.raises(ManifestError, match="m.csv:2: empty 'path' or 'label'.*needs arousal and valence"):
        R.read_manifest(m)
    m.write_text("path,arousal\na.wav,0.8\n")
    with pytest.raises(ManifestError, match="missing column.*label"):
        R.read_manifest(m)
