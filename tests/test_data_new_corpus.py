"""Adding a corpus exactly as docs/architecture.md's "where to change things" says: a reader function with @reader, its
entry in CORPORA and its rows in label_map.csv; the corpus then passes the label check, prepares from its folder
and reads back."""

import pytest

from exhubert_jax.data.audio import load_audio, to_pcm16
from exhubert_jax.data.errors import PreparedDataError
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare.builders import SCHEMA, builder_class
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.sources import labels, readers
from exhubert_jax.data.sources.corpora import CORPORA, Corpus, get_corpus
from tests.test_data_labels import label_disagreements
from tests.test_data_prepare import wav

ROWS = [  # the corpus's section of label_map.csv
    'tiny,j,joy (j),high_positive,"meaning: joy, the Tiny corpus\'s j (2026); placement: Russell (1980) places '
    'happy and delighted in the aroused-pleasant quadrant"',
    'tiny,g,gloom (g),low_negative,"meaning: gloom, the Tiny corpus\'s g (2026); placement: Russell (1980) places '
    'gloomy and sad in the unpleasant low-arousal quadrant"',
    'tiny,x,unrated (x),drop,"meaning: no agreed label, the Tiny corpus\'s x (2026); placement: dropped"',
]


def read_tiny(root):
    """Tiny: SPEAKER_LABEL_NN.wav (speaker s0-s9, label j, g or x)."""
    return readers._by_name("tiny", root, r"^(s\d)_([a-z])_(\d\d)$", lambda m, p: (m[2], m[1], None))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The three edits, undone after the test: the table is the shipped one plus the section (TABLE_PATH)."""
    table = tmp_path / "label_map.csv"
    table.write_text(labels.TABLE_PATH.read_text(encoding="utf-8") + "\n".join(ROWS) + "\n", encoding="utf-8")
    monkeypatch.setattr(labels, "TABLE_PATH", table)
    monkeypatch.setitem(CORPORA, "tiny", Corpus("tiny", "Tiny test corpus", "other", "none", "a test (2026)",
                                                "none", reader="tiny", split="speaker"))
    readers.reader("tiny", labels=("j", "g", "x"), version=1)(read_tiny)
    yield
    del readers.READERS["tiny"]


def tiny_tree(root):
    """Three speakers, each saying j, g and x twice."""
    for s in range(3):
        for k, label in enumerate("jgxjgx"):
            wav(root / f"s{s}" / f"s{s}_{label}_{k:02d}.wav", seconds=0.1 + 0.02 * k, freq=150 + 50 * s + 10 * k)
    return root


def test_a_corpus_added_as_the_readme_says_prepares_and_reads_back(tiny, tmp_path):
    assert label_disagreements(labels.load_label_table()) == {}  # the label test passes for it
    assert get_corpus("Tiny").reader == "tiny" and "(layout: Tiny: SPEAKER_LABEL_NN.wav" in \
        builder_class(get_corpus("tiny")).MANUAL_DOWNLOAD_INSTRUCTIONS
    src, out = tiny_tree(tmp_path / "src"), tmp_path / "out"
    summary = prepare_corpus("tiny", src, out, progress=False, log=lambda m: None)
    assert summary["n_examples"] == 12 and summary["speaker_independent"]  # the six x files are dropped
    corpus = open_prepared("tiny", out)
    assert corpus.record["version"].startswith(f"{SCHEMA}.1.") and corpus.native_labels == ("g", "j")
    seen = []
    for name in corpus.splits:
        split = corpus.split(name)
        for fields, pcm in split.read_pcm(range(len(split))):
            path = src / fields["path"]
            assert path.stem.split("_")[:2] == [fields["speaker"], fields["native_label"]]
            target = {"j": "high_positive", "g": "low_negative"}[fields["native_label"]]
            assert fields["label"] == labels.class_index(target)
            assert (pcm == to_pcm16(load_audio(path))).all()
            seen.append((name, fields["speaker"]))
    assert len(seen) == 12 and len({sp for _, sp in seen}) == 3 and len(set(seen)) == 3  # one speaker per split


def test_bumping_the_new_readers_version_asks_to_prepare_it_again(tiny, tmp_path):
    out = tmp_path / "out"
    prepare_corpus("tiny", tiny_tree(tmp_path / "src"), out, progress=False, log=lambda m: None)
    del readers.READERS["tiny"]
    readers.reader("tiny", labels=("j", "g", "x"), version=2)(read_tiny)
    changed = (rf"prepared as version {SCHEMA}\.1\.\d+, this code reads {SCHEMA}\.2\.\d+ \(the reader or its version "
               r"changed since\); ")
    with pytest.raises(PreparedDataError, match=changed + "prepare it again: python -m exhubert_jax.data.prepare"):
        open_prepared("tiny", out)
