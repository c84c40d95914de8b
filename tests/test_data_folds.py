"""Folds as prepared datasets: EmoBox's published folds (from a tree in EmoBox's layout) and speaker k-fold."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from exhubert_jax.data.errors import UnknownLabelError
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare.command import main
from exhubert_jax.data.prepare.folds import prepare_emobox
from exhubert_jax.data.sources.labels import CLASSES
from tests.test_data_prepare import make_corpus, wav

QUIET = dict(progress=False, log=lambda m: None)
# EMO-DB's letters and the spellings EmoBox's data/emodb lists use for them
EMOBOX_EMODB = {"W": "anger", "L": "boredem", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "Neutral"}


def line(wav_path, emo):
    key = "emodb-" + Path(wav_path).stem
    return json.dumps({"key": key, "dataset": "emodb", "wav": wav_path, "type": "raw", "sample_rate": 16000,
                       "num_frame": 4000.0, "task": "category", "length": 0.25, "emo": emo, "channel": 1})


def emobox_tree(tmp_path):
    """Generated EMO-DB-named audio under ROOT/downloads/emodb/wav and EmoBox metadata for it: fold 1 tests
    speaker 03 (no valid list), fold 2 tests speaker 08 plus one file of 09 and has a valid list."""
    root, meta = tmp_path / "corpora", tmp_path / "EmoBox" / "data" / "emodb"
    rng = np.random.default_rng(0)
    rows = {}
    for spk in ("03", "08", "09", "10", "11"):
        for k, letter in enumerate(EMOBOX_EMODB):
            rel = f"downloads/emodb/wav/{spk}a0{k}{letter}a.wav"
            wav(root / rel, data=(0.1 * rng.standard_normal(4000)).astype(np.float32))
            rows[rel] = line(rel, EMOBOX_EMODB[letter])
    meta.mkdir(parents=True)
    (meta / "emodb.jsonl").write_text("\n".join(rows.values()) + "\n")
    test1 = [r for r in rows if "/03" in r]
    test2 = [r for r in rows if "/08" in r] + [next(r for r in rows if "/09" in r)]
    valid2 = [r for r in rows if "/10" in r]
    lists = {1: {"train": [r for r in rows if r not in test1], "test": test1},
             2: {"train": [r for r in rows if r not in test2 + valid2], "valid": valid2, "test": test2}}
    for n, splits in lists.items():
        (meta / f"fold_{n}").mkdir()
        for word, rels in splits.items():
            (meta / f"fold_{n}" / f"emodb_{word}_fold_{n}.jsonl").write_text("\n".join(rows[r] for r in rels) + "\n")
    return root, meta, lists


def prepared_ids(name, out):
    corpus = open_prepared(name, out)
    return {s: [f["path"] for f, _ in corpus.split(s).read_pcm(range(len(corpus.split(s))))] for s in corpus.splits}


def test_emobox_folds_hold_exactly_the_listed_files(tmp_path):
    root, meta, lists = emobox_tree(tmp_path)
    logs = []
    summaries = prepare_emobox(meta, root, tmp_path / "out", progress=False, log=logs.append)
    assert "emodb-emobox-fold1: test speakers disjoint from train/validation speakers" in logs
    assert "emodb-emobox-fold2: test speakers shared with train/validation speakers" in logs
    assert [s["corpus"] for s in summaries] == ["emodb-emobox-fold1", "emodb-emobox-fold2"]
    for n, splits in lists.items():
        ids = prepared_ids(f"emodb-emobox-fold{n}", tmp_path / "out")
        assert sorted(ids["test"]) == sorted(splits["test"])  # EmoBox's test list, exactly
        assert sorted(ids["train"] + ids["validation"]) == sorted(splits["train"] + splits.get("valid", []))
    assert sorted(prepared_ids("emodb-emobox-fold2", tmp_path / "out")["validation"]) == sorted(lists[2]["valid"])
    one, two = summaries
    assert one["validation"].startswith("seeded label-stratified 20% of EmoBox's train list")
    assert [one["splits"][s]["n"] for s in ("train", "validation", "test")] == [21, 7, 7]  # 1 of 4 per label
    assert two["validation"] == "EmoBox's own (its valid list)"
    assert one["test_speakers_disjoint"] is True and two["test_speakers_disjoint"] is False  # 09 in both


def test_emobox_labels_map_through_the_table_and_folds_are_tfds(tmp_path):
    root, meta, _ = emobox_tree(tmp_path)
    prepare_emobox(meta, root, tmp_path / "out", **QUIET)
    corpus = open_prepared("emodb-emobox-fold1", tmp_path / "out")
    assert corpus.info["label_map"]["boredem"]["class"] == "low_negative"  # boredom's class, via emodb's rows
    assert corpus.info["label_map"]["boredem"]["section"] == "emodb"
    assert corpus.info["speakers_from"].startswith("the emodb reader on")
    builder = tfds.builder_from_directory(str(corpus.version_dir))
    test = builder.as_data_source(split="test")
    names = builder.info.features["native_label"].names
    boredom = [ex for ex in test if names[ex["native_label"]] == "boredem"]
    assert boredom and all(ex["label"] == CLASSES.index("low_negative") for ex in boredom)
    assert {ex["speaker"] for ex in test} == {b"03"}


def test_emobox_unknown_label_names_file_and_line(tmp_path):
    root, meta, _ = emobox_tree(tmp_path)
    lines = (meta / "emodb.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"emo": "happy"', '"emo": "grumpy"')
    (meta / "emodb.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UnknownLabelError, match=rf"emodb: {meta}/emodb.jsonl:5: unknown label 'grumpy'"):
        prepare_emobox(meta, root, tmp_path / "out", **QUIET)


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "fold_2/emodb_test_fold_2.jsonl").unlink(), "fold_2: no emodb_test_fold_2.jsonl"),
    (lambda m: (m / "fold_1/emodb_test_fold_1.jsonl").write_text('{"key": "emodb-x", "wav": "x.wav", "emo": "sad"}'),
     "emodb_test_fold_1.jsonl:1: key 'emodb-x' is not in the corpus list"),
    (lambda m: (m / "fold_1/emodb_test_fold_1.jsonl").write_text('{"key": "emodb-x", "wav": "x.wav"}'),
     "emodb_test_fold_1.jsonl:1: missing or empty 'emo'"),
    (lambda m: (m / "emodb.jsonl").write_bytes('{"key": "emodb-x", "wav": "x.wav", "emo": "d\xe9go\xfbt"}\n'
                                               .encode("latin-1")),
     ("emodb.jsonl: not UTF-8 text (byte 0xe9 at offset 44, as Latin-1 or another 8-bit encoding writes it); save "
      "it as UTF-8, e.g. iconv -f latin1 -t utf-8 ")),
])
def test_emobox_layout_errors_are_one_line_naming_the_file(tmp_path, damage, message, capsys):
    root, meta, _ = emobox_tree(tmp_path)
    damage(meta)
    assert main(["--emobox", str(meta.parent), "--emobox-root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_kfold_cli_writes_speaker_disjoint_folds_and_refuses_corpora_without_speakers(tmp_path, capsys):
    manifest = make_corpus(tmp_path / "src", n_speakers=4, per_speaker=3)
    out = tmp_path / "out"
    assert main(["--corpus", "toy", "--manifest", str(manifest), "--folds", "2", "--out", str(out),
                 "--no-progress"]) == 0
    summaries = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [s["corpus"] for s in summaries] == ["toy-fold1of2", "toy-fold2of2"]
    assert all(s["speaker_independent"] and s["split_method"] == "kfold:2" for s in summaries)
    tests = [open_prepared(f"toy-fold{k}of2", out).info["splits"]["test"]["speakers"] for k in (1, 2)]
    assert sorted(tests[0] + tests[1]) == ["spk0", "spk1", "spk2", "spk3"]
    assert sum(s["splits"]["test"]["n"] for s in summaries) == 12  # every utterance is test once
    nospk = tmp_path / "nospk.csv"
    nospk.write_text("path,label\n" + "".join(f"s0/utt{k}.wav,sad\n" for k in range(3)))
    assert main(["--corpus", "nospk", "--manifest", str(nospk), "--source", str(tmp_path / "src"),
                 "--split-method", "kfold:2", "--out", str(out)]) == 2
    assert "nospk: speaker-independent k-fold needs a speaker for every file" in capsys.readouterr().err


def test_a_missing_fold_names_the_command_that_prepares_its_folds(tmp_path):
    from exhubert_jax.data.loading.resolve import CorpusSpecError, resolve_corpora

    with pytest.raises(CorpusSpecError, match="--corpus emodb --source /path/to/emodb --folds 5"):
        resolve_corpora("emodb-fold2of5", tmp_path)
    with pytest.raises(CorpusSpecError, match="--emobox /path/to/EmoBox/data/iemocap --emobox-root"):
        resolve_corpora("iemocap-emobox-fold1", tmp_path)


def test_emobox_data_folder_goes_on_after_a_corpus_fails(tmp_path, capsys):
    root, meta, _ = emobox_tree(tmp_path)
    (meta.parent / "ravdess").mkdir()
    (meta.parent / "ravdess" / "ravdess.jsonl").write_text(line("downloads/ravdess/x.wav", "Angry") + "\n")
    out = ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(["--emobox", str(meta.parent), "--emobox-root", str(root), *out]) == 2
    captured = capsys.readouterr()
    assert [json.loads(l)["corpus"] for l in captured.out.splitlines()] == ["emodb-emobox-fold1", "emodb-emobox-fold2"]
    errors = [l for l in captured.err.splitlines() if l.startswith("error: ")]
    assert errors[0].endswith("ravdess: no fold_N/ folders") and "1 EmoBox corpus folder(s) not prepared" in errors[1]
    assert main(["--emobox", str(meta), "--emobox-root", str(tmp_path / "nowhere"), *out]) == 2
    assert "--emobox-root (the folder the corpora were downloaded into) not found" in capsys.readouterr().err
