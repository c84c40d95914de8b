"""EmoNet's corpus layout (list files per split), folder-name aliases, and the registry listing."""

import json
from pathlib import Path

import pytest

from exhubert_jax.data.errors import ManifestError, MissingSourceError, UnknownCorpusError
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare.command import main
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.sources.corpora import ALIASES, CORPORA, NO_SOURCE, get_corpus
from exhubert_jax.data.sources.emonet import find_corpora, read_emonet
from test_data_prepare import wav

# EmoNet's folder names (its multi-task training list, plus IEMOCAP-4cl and EU-EmoVoice) -> registry names
EMONET_FOLDERS = {
    "AirplaneBehaviourCorpus": "abc", "AngerDetection": "ad", "BurmeseEmotionalSpeech": "bes", "CASIA": "casia",
    "ChineseVocalEmotions": "cve", "DanishEmotionalSpeech": "des", "DEMoS": "demos", "EA-ACT": "ea-act",
    "EA-BMW": "ea-bmw", "EA-WSJ": "ea-wsj", "EMO-DB": "emodb", "EmoFilm": "emofilm", "EmotiW-2014": "emotiw-2014",
    "ENTERFACE": "enterface", "EU-EmoSS": "eu-emoss", "FAU_AIBO": "fau-aibo", "GEMEP": "gemep", "GVESS": "gvess",
    "MandarinEmotionalSpeech": "mes", "MELD": "meld", "PPMK-EMO": "ppmmk", "SIMIS": "simis", "SMARTKOM": "smartkom",
    "SUSAS": "susas", "TurkishEmoBUEE": "turkishemo", "IEMOCAP-4cl": "iemocap", "EU-EmoVoice": "eu-ev",
}
NO_PUBLIC_SOURCE = ["ad", "bes", "mes", "ea-act", "ea-bmw", "ea-wsj", "gvess", "ppmmk", "simis", "turkishemo"]


def emonet_corpus(folder: Path, rows: dict[str, list[tuple[str, str]]], lists=None) -> Path:
    """An EmoNet-layout corpus folder: audio files and one list file per split."""
    lists = lists or {"train": "train.csv", "validation": "devel.csv", "test": "test.csv"}
    for k, (split, items) in enumerate(rows.items()):
        for i, (file, _) in enumerate(items):
            wav(folder / file, seconds=0.2 + 0.02 * i, freq=150 + 30 * k)
        (folder / lists[split]).write_text("file,label\n" + "".join(f"{f},{lab}\n" for f, lab in items))
    return folder


def two_corpora(root: Path) -> Path:
    """EMO-DB (labels in words, as EmoNet writes them) and AngerDetection (alias of 'ad')."""
    emonet_corpus(root / "EMO-DB", {
        "train": [("wav/03a01Wa.wav", "anger"), ("wav/03a02La.wav", "boredom"), ("wav/08a01Fa.wav", "happiness"),
                  ("wav/08a02Na.wav", "neutral")],
        "validation": [("wav/09a01Ta.wav", "sadness"), ("wav/09a02Wa.wav", "anger")],
        "test": [("wav/10a01Ea.wav", "disgust"), ("wav/10a02Aa.wav", "fear"), ("wav/10a03Na.wav", "N")]})
    emonet_corpus(root / "AngerDetection", {
        "train": [("a/1.wav", "angry"), ("a/2.wav", "neutral"), ("a/3.wav", "angry")],
        "validation": [("a/4.wav", "neutral")], "test": [("b/5.wav", "angry"), ("b/6.wav", "neutral")]})
    return root


def test_aliases_resolve():
    for folder, name in EMONET_FOLDERS.items():
        assert get_corpus(folder).name == name, folder
    assert set(ALIASES) == set(EMONET_FOLDERS) and all(n in CORPORA for n in ALIASES.values())
    for spelling in ("FAU Aibo", "EU-EV", "Crema-D", "PPMMK", "TurkishEmo", "eNTERFACE"):
        get_corpus(spelling)
    with pytest.raises(UnknownCorpusError, match="'AngerDetect'"):
        get_corpus("AngerDetect")  # no guessing from a prefix


def test_corpora_without_public_source_say_so():
    assert sorted(c.name for c in CORPORA.values() if c.licence == NO_SOURCE) == sorted(NO_PUBLIC_SOURCE)
    assert all(CORPORA[n].reader == "manifest" for n in NO_PUBLIC_SOURCE)


def test_read_emonet_keeps_the_lists_split_and_no_speakers(tmp_path):
    folder = two_corpora(tmp_path)
    utts = read_emonet(folder / "AngerDetection")
    assert [(Path(u.path).relative_to(folder / "AngerDetection").as_posix(), u.native_label, u.split) for u in utts] \
        == [("a/1.wav", "angry", "train"), ("a/2.wav", "neutral", "train"), ("a/3.wav", "angry", "train"),
            ("a/4.wav", "neutral", "validation"), ("b/5.wav", "angry", "test"), ("b/6.wav", "neutral", "test")]
    assert all(u.speaker is None for u in utts)
    assert utts[3].origin == f"{folder / 'AngerDetection' / 'devel.csv'}:2"


def test_emonet_tree_prepares_every_corpus(tmp_path, capsys):
    root = two_corpora(tmp_path / "EmoSet")
    assert main(["--emonet", str(root), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr()
    summaries = {s["corpus"]: s for s in map(json.loads, out.out.strip().splitlines())}
    assert set(summaries) == {"ad", "emodb"}
    emodb = summaries["emodb"]
    assert {k: v["n"] for k, v in emodb["splits"].items()} == {"train": 4, "validation": 2, "test": 3}
    assert emodb["split_method"] == "own" and emodb["speaker_independent"] is None
    assert all(v["speakers"] is None for v in emodb["splits"].values())
    assert emodb["splits"]["train"]["classes"] == {"low_negative": 1, "low_neutral": 1, "low_positive": 0,
                                                   "high_negative": 1, "high_neutral": 0, "high_positive": 1}
    assert summaries["ad"]["n_examples"] == 6
    assert "speakers are unknown (EmoNet layout)" in out.err
    info = open_prepared("emodb", tmp_path / "out").info
    assert info["speaker_independent"] is None and info["split_method"] == "own"
    assert info["label_map"]["anger"] == {"class": "high_negative", "meaning": "anger", "section": "*"}
    assert info["label_map"]["N"]["section"] == "emodb"  # the corpus's own code still maps through its section


def test_one_folder_by_corpus_and_source(tmp_path, capsys):
    root = two_corpora(tmp_path)
    assert main(["--corpus", "ad", "--source", str(root / "AngerDetection"), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["corpus"] == "ad"


def test_validation_list_may_be_named_val_csv(tmp_path):
    folder = emonet_corpus(tmp_path / "GEMEP", {
        "train": [("x/1.wav", "pride"), ("x/2.wav", "relief")], "validation": [("x/3.wav", "pride")],
        "test": [("x/4.wav", "relief")]}, lists={"train": "train.csv", "validation": "val.csv", "test": "test.csv"})
    summary = prepare_corpus("GEMEP", folder, tmp_path / "out", progress=False, log=lambda m: None)
    assert summary["corpus"] == "gemep" and summary["splits"]["validation"]["n"] == 1


def test_unknown_label_names_list_file_row_and_label(tmp_path, capsys):
    root = two_corpora(tmp_path / "EmoSet")
    devel = root / "EMO-DB" / "devel.csv"
    devel.write_text(devel.read_text().replace("09a02Wa.wav,anger", "09a02Wa.wav,grumpy"))
    assert main(["--emonet", str(root), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("error: emodb")]
    assert len(errors) == 1 and f"{devel}:3: unknown label 'grumpy'" in errors[0]
    assert [json.loads(line)["corpus"] for line in out.out.strip().splitlines()] == ["ad"]  # the other one ran
    assert f"not prepared: {root / 'EMO-DB'}" in out.err


def test_unknown_and_duplicate_folders_are_reported_by_name(tmp_path, capsys):
    root = two_corpora(tmp_path / "EmoSet")
    emonet_corpus(root / "MysteryCorpus", {"train": [("1.wav", "angry")], "validation": [("2.wav", "sad")],
                                           "test": [("3.wav", "sad")]})
    emonet_corpus(root / "AD", {"train": [("1.wav", "angry")], "validation": [("2.wav", "sad")],
                                "test": [("3.wav", "sad")]})
    (root / "notes").mkdir()  # not a corpus folder: ignored
    found, problems = find_corpora(root)
    assert [e.name for _, e in found] == ["emodb"]
    assert [[d.name for d in folders] for folders, _ in problems] == [["MysteryCorpus"], ["AD", "AngerDetection"]]
    assert "unknown corpus folder 'MysteryCorpus'" in problems[0][1]
    assert "'AD', 'AngerDetection' are all corpus 'ad'" in problems[1][1]
    assert main(["--emonet", str(root), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert [json.loads(line)["corpus"] for line in out.out.strip().splitlines()] == ["emodb"]
    assert f"3 corpus folder(s) not prepared: {root / 'MysteryCorpus'}, {root / 'AD'}, {root / 'AngerDetection'}" \
        in out.err


@pytest.mark.parametrize("damage,error,message", [
    (lambda f: (f / "test.csv").unlink(), MissingSourceError, "EmoNet test list not found: .*test.csv"),
    (lambda f: (f / "train.csv").write_text("path,label\na/1.wav,angry\n"), ManifestError,
     r"train.csv:1: missing column\(s\) file"),
    (lambda f: (f / "train.csv").write_text("file,label\na/1.wav,\n"), ManifestError,
     r"train.csv:2: empty 'file' or 'label'"),
    (lambda f: (f / "test.csv").write_text("file,label\na/1.wav,angry\n"), ManifestError,
     r"test.csv:2: a/1.wav is listed twice \(first at .*train.csv:2\)"),
    (lambda f: (f / "val.csv").write_text("file,label\n"), Exception, "both devel.csv and val.csv"),
])
def test_bad_list_files_name_the_file(tmp_path, damage, error, message):
    folder = two_corpora(tmp_path) / "AngerDetection"
    damage(folder)
    with pytest.raises(error, match=message):
        read_emonet(folder)


def test_a_latin1_list_file_is_one_line_with_the_command_that_converts_it(tmp_path, capsys):
    folder = two_corpora(tmp_path) / "AngerDetection"
    (folder / "train.csv").write_bytes("file,label\na/1.wav,col\xe8re\n".encode("latin-1"))
    assert main(["--corpus", "ad", "--source", str(folder), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert f"{folder / 'train.csv'}: not UTF-8 text (byte 0xe8 " in err[0]
    assert err[0].endswith(f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {folder / 'train.csv'}")


def test_list_shows_labels_and_access_columns(capsys):
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["name", "group", "reader", "split", "labels", "language"]
    assert lines[0].endswith("licence / access")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["emodb"].split()[4] == "8" and rows["jl-corpus"].split()[4] == "10"  # emodb: 7 letters + boredem
    assert rows["iemocap"].split()[4] == "9"  # 'oth' and 'xxx' are dropped, not mapped
    assert rows["des"].split()[4] == "generic"
    for name in NO_PUBLIC_SOURCE:
        assert rows[name].endswith(NO_SOURCE), name
    assert rows["crema-d"].endswith("Open Database License (ODbL) v1.0")
