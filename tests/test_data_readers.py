"""Each reader on a small generated tree that follows the corpus's real naming convention; the manifest."""

import json
from pathlib import Path

import pytest

from exhubert_jax.data.errors import LayoutError, ManifestError, MissingSourceError
from exhubert_jax.data.sources import readers as R
from exhubert_jax.data.sources.labels import load_label_table


def tree(root: Path, *paths: str) -> Path:
    """Create empty files (readers only look at names and label files)."""
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")
    return root


def triples(utts, root):
    return [(str(Path(u.path).relative_to(root)), u.native_label, u.speaker, u.split) for u in utts]


CASES = {
    "emodb": (["wav/03a01Fa.wav", "wav/16b10Wb.wav", "wav/09a05Lc.wav"],
              [("wav/03a01Fa.wav", "F", "03", None), ("wav/09a05Lc.wav", "L", "09", None),
               ("wav/16b10Wb.wav", "W", "16", None)]),
    "ravdess": (["Actor_01/03-01-02-01-01-01-01.wav", "Actor_12/03-02-06-02-02-01-12.wav"],
                [("Actor_01/03-01-02-01-01-01-01.wav", "02", "01", None),
                 ("Actor_12/03-02-06-02-02-01-12.wav", "06", "12", None)]),
    "crema-d": (["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1091_IEO_HAP_HI.wav"],
                [("AudioWAV/1001_DFA_ANG_XX.wav", "ANG", "1001", None),
                 ("AudioWAV/1091_IEO_HAP_HI.wav", "HAP", "1091", None)]),
    "tess": (["OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_back_ps.wav", "YAF_sad/yaf_dog_Sad.wav"],
             [("OAF_angry/OAF_back_angry.wav", "angry", "OAF", None),
              ("YAF_pleasant_surprised/YAF_back_ps.wav", "ps", "YAF", None),
              ("YAF_sad/yaf_dog_Sad.wav", "sad", "YAF", None)]),
    "savee": (["AudioData/DC/a01.wav", "AudioData/KL/a01.wav", "AudioData/KL/su15.wav", "ALL/JE_sa03.wav"],
              [("ALL/JE_sa03.wav", "sa", "JE", None), ("AudioData/DC/a01.wav", "a", "DC", None),
               ("AudioData/KL/a01.wav", "a", "KL", None), ("AudioData/KL/su15.wav", "su", "KL", None)]),
    "emovo": (["f1/dis-f1-b1.wav", "m3/sor-m3-n5.wav"],
              [("f1/dis-f1-b1.wav", "dis", "f1", None), ("m3/sor-m3-n5.wav", "sor", "m3", None)]),
    "shemo": (["female/F01A01.wav", "male/M12W05.wav"],
              [("female/F01A01.wav", "A", "F01", None), ("male/M12W05.wav", "W", "M12", None)]),
    "subesco": (["F_01_OISHI_S_1_ANGRY_1.wav", "M_10_RAFI_S_10_SURPRISE_5.wav"],
                [("F_01_OISHI_S_1_ANGRY_1.wav", "ANGRY", "F_01", None),
                 ("M_10_RAFI_S_10_SURPRISE_5.wav", "SURPRISE", "M_10", None)]),
    "esd": (["ESD/0001/Angry/train/0001_000351.wav", "ESD/0011/Happy/evaluation/0011_000721.wav",
             "ESD/0020/Sad/test/0020_001091.wav", "flat/0005/Neutral/0005_000001.wav"],
            [("ESD/0001/Angry/train/0001_000351.wav", "Angry", "0001", "train"),
             ("ESD/0011/Happy/evaluation/0011_000721.wav", "Happy", "0011", "validation"),
             ("ESD/0020/Sad/test/0020_001091.wav", "Sad", "0020", "test"),
             ("flat/0005/Neutral/0005_000001.wav", "Neutral", "0005", None)]),
    "casia": (["CASIA/liuchanhg/angry/201.wav", "CASIA/wangzhe/angry/201.wav", "CASIA/ZhaoZuoxiang/surprise/250.wav",
               "other/Zhe.Wang/fear/001.wav"],
              [("CASIA/ZhaoZuoxiang/surprise/250.wav", "surprise", "ZhaoZuoxiang", None),
               ("CASIA/liuchanhg/angry/201.wav", "angry", "liuchanhg", None),
               ("CASIA/wangzhe/angry/201.wav", "angry", "wangzhe", None),
               ("other/Zhe.Wang/fear/001.wav", "fear", "wangzhe", None)]),
    "mesd": (["Anger_C_A_abajo.wav", "Neutral_F_B_mesa_grande.wav"],
             [("Anger_C_A_abajo.wav", "Anger", None, None), ("Neutral_F_B_mesa_grande.wav", "Neutral", None, None)]),
    "jl-corpus": (["JL(wav+txt)/female1_angry_1a_1.wav", "JL(wav+txt)/male2_encouraging_12b_2.wav"],
                  [("JL(wav+txt)/female1_angry_1a_1.wav", "angry", "female1", None),
                   ("JL(wav+txt)/male2_encouraging_12b_2.wav", "encouraging", "male2", None)]),
    "asvp-esd": (["Audio/actor_12/03-01-06-01-02-12-02-01-01-16.wav", "Audio/actor_3/03-02-13-01-07-03-04-02-02.wav"],
                 [("Audio/actor_12/03-01-06-01-02-12-02-01-01-16.wav", "06", "12", None),
                  ("Audio/actor_3/03-02-13-01-07-03-04-02-02.wav", "13", "03", None)]),
}


@pytest.mark.parametrize("corpus", sorted(CASES))
def test_name_based_readers(tmp_path, corpus):
    files, expected = CASES[corpus]
    root = tree(tmp_path / corpus, *files, "README.txt", ".hidden/._x.wav", "__MACOSX/junk.wav")
    utts = R.READERS[corpus](root)
    assert triples(utts, root) == expected
    assert utts == sorted(utts)
    table = load_label_table()
    for u in utts:
        table.lookup(corpus, u.native_label, u.path)  # every produced label is in the table
        assert u.native_label in R.READERS[corpus].labels  # and among those its reader declares


GENDERS = {"emodb": ["male", "female", "female"], "ravdess": ["male", "female"], "crema-d": [None, None],
           "tess": ["female"] * 3, "savee": ["male"] * 4, "emovo": ["female", "male"], "shemo": ["female", "male"],
           "subesco": ["female", "male"], "esd": ["female", "male", "male", "male"], "casia": [None] * 4,
           "mesd": [None, "female"], "jl-corpus": ["female", "male"], "asvp-esd": [None, None]}


@pytest.mark.parametrize("corpus", sorted(CASES))
def test_readers_give_the_documented_genders(tmp_path, corpus):
    """EMO-DB's speaker table, RAVDESS's odd (male) and even (female) actors, TESS's two women, SAVEE's four men,
    ESD's README, and the gender letters or words of EMOVO, ShEMO, SUBESCO, MESD (C: a child) and JL-Corpus."""
    utts = R.READERS[corpus](tree(tmp_path / corpus, *CASES[corpus][0]))
    assert [u.gender for u in utts] == GENDERS[corpus]
    languages = {"esd": ["Mandarin", "English", "English", "Mandarin"]}  # ESD's README: 0001-0010 Mandarin
    assert [u.language for u in utts] == languages.get(corpus, [None] * len(utts))


def test_crema_d_genders_from_video_demographics(tmp_path):
    files = ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_DFA_ANG_XX.wav", "AudioWAV/1091_IEO_HAP_HI.wav"]
    tree(tmp_path, *files)
    (tmp_path / "VideoDemographics.csv").write_text("\ufeffActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,"
                                                    "Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n")
    assert [u.gender for u in R.read_crema_d(tmp_path)] == ["male", "female", None]  # 1091 is not listed
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age\n1001,51\n")
    with pytest.raises(ManifestError, match=r"VideoDemographics.csv:1: missing column\(s\) Sex"):
        R.read_crema_d(tmp_path)


def test_msp_podcast_gender_column(tmp_path):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "a.wav,N,4,4,4,127,Female,Train\nb.wav,A,6,2,5,Unknown,Unknown,Development\nc.wav,H,5,6,4,9,Male,Test1\n")
    assert [u.gender for u in R.read_msp_podcast(tmp_path)] == ["female", None, "male"]


def test_normalize_gender():
    assert [R.normalize_gender(v) for v in ("F", " Woman ", "MALE", "m", "man", "", None, "Unknown", "n/a",
                                             "Non-binary")] == ["female", "female", "male", "male", "male", None,
                                                                None, None, None, "non-binary"]


def test_readers_declare_a_layout_and_a_version():
    for name, reader in R.READERS.items():
        assert reader.name == name and type(reader.version) is int and reader.version >= 1
        assert ": " in reader.layout and "\n" not in reader.layout, name  # 'CORPUS: the files it reads'
    assert R.READERS["emodb"].read is R.read_emodb and R.READERS["emodb"].layout.startswith("EMO-DB: wav/")


@pytest.mark.parametrize("name,kwargs,problem", [
    ("emodb", dict(labels=["W"], version=1), "registered twice"),
    ("new", dict(labels=["W"], version=0), "positive integer"),
    ("new", dict(labels=["W"], version="1"), "positive integer"),
    ("new", dict(labels=[], version=1), "no native labels"),
])
def test_reader_registration_is_checked(name, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        R.reader(name, **kwargs)(lambda root: [])
    assert "new" not in R.READERS


def test_vivae_prefers_full_set(tmp_path):
    root = tree(tmp_path, "VIVAE/full_set/S01_pain_low_01.wav", "VIVAE/full_set/S11_achievement_peak_10.wav",
                "VIVAE/core_set/S01_pain_low_01.wav")
    utts = R.read_vivae(root)
    assert [(u.native_label, u.speaker) for u in utts] == [("pain", "S01"), ("achievement", "S11")]
    assert all("full_set" in u.path for u in utts)


def test_duplicate_copies_are_refused(tmp_path):
    root = tree(tmp_path / "emodb", "a/03a01Fa.wav", "b/03a01Fa.wav")
    with pytest.raises(LayoutError, match="same utterance"):
        R.read_emodb(root)
    root = tree(tmp_path / "casia", "copy1/wangzhe/sad/201.wav", "copy2/wangzhe/sad/201.wav")
    with pytest.raises(LayoutError, match="same utterance"):
        R.read_casia(root)


def test_iemocap_from_evaluation_files(tmp_path):
    ev = tmp_path / "Session1/dialog/EmoEvaluation"
    ev.mkdir(parents=True)
    (ev / "Ses01F_impro01.txt").write_text(
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]\n")
    (ev / "Ses01M_script01_1.txt").write_text(
        "[1.0 - 2.0]\tSes01M_script01_1_F012\txxx\t[2.5000, 3.0000, 3.0000]\n")
    utts = R.read_iemocap(tmp_path)
    wav = tmp_path / "Session1/sentences/wav"
    assert [(u.path, u.native_label, u.speaker) for u in utts] == [
        (str(wav / "Ses01F_impro01/Ses01F_impro01_F000.wav"), "neu", "Ses01F"),
        (str(wav / "Ses01F_impro01/Ses01F_impro01_M001.wav"), "fru", "Ses01M"),
        (str(wav / "Ses01M_script01_1/Ses01M_script01_1_F012.wav"), "xxx", "Ses01F"),
    ]
    assert [u.gender for u in utts] == ["female", "male", "female"]  # the turn's letter: Ses01F_impro01_M001 is a man


def test_meld_from_csvs(tmp_path):
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    rows = {"train": '1,"Oh, hi.",Chandler,joy,positive,0,0,8,21,"00:16:16,059","00:16:21,731"\n'
                     "2,Hey.,Monica,neutral,neutral,0,1,8,21,x,y\n",
            "dev": "1,Why?,Joey,surprise,neutral,3,2,1,1,x,y\n",
            "test": "1,No!,Rachel,anger,negative,0,0,2,2,x,y\n"}
    for split, body in rows.items():
        (tmp_path / f"{split}_sent_emo.csv").write_text(header + body)
    tree(tmp_path, "train_splits/dia0_utt0.wav", "dev_splits_complete/dia3_utt2.wav",
         "output_repeated_splits_test/dia0_utt0.flac")
    got = triples(R.read_meld(tmp_path), tmp_path)
    assert sorted(got) == sorted([
        ("train_splits/dia0_utt0.wav", "joy", "Chandler", "train"),
        ("train_splits/dia0_utt1.wav", "neutral", "Monica", "train"),  # missing clip: reported at preparation
        ("dev_splits_complete/dia3_utt2.wav", "surprise", "Joey", "validation"),
        ("output_repeated_splits_test/dia0_utt0.flac", "anger", "Rachel", "test"),
    ])


def test_meld_needs_its_csvs(tmp_path):
    with pytest.raises(LayoutError, match="train_sent_emo.csv"):
        R.read_meld(tmp_path)


@pytest.mark.parametrize("reader,bad", [(R.read_emodb, "wav/03a01Fa_copy.wav"), (R.read_ravdess, "Actor_01/x.wav"),
                                        (R.read_casia, "angry.wav")])
def test_a_file_off_the_convention_is_named(tmp_path, reader, bad):
    tree(tmp_path, bad)
    with pytest.raises(LayoutError, match=Path(bad).name.replace("(", r"\(").replace("+", r"\+")):
        reader(tmp_path)


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(MissingSourceError, match="not found"):
        R.read_emodb(tmp_path / "nope")
    with pytest.raises(LayoutError, match="no audio files"):
        R.read_emodb(tmp_path)


def test_manifest_csv_and_jsonl(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,speaker\nb.wav,angry,s2\na.wav,Neutral,\n/abs/c.wav,sad,s1\n")
    utts = R.read_manifest(tmp_path / "m.csv")
    assert [(u.path, u.native_label, u.speaker, u.split) for u in utts] == [
        ("/abs/c.wav", "sad", "s1", None), (str(tmp_path / "a.wav"), "Neutral", None, None),
        (str(tmp_path / "b.wav"), "angry", "s2", None)]
    lines = [{"path": "x.wav", "label": "happy", "speaker": "a", "split": "dev"},
             {"path": "y.wav", "label": "sad", "speaker": "b", "split": "TRAIN"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    utts = R.read_manifest(tmp_path / "m.jsonl", root="/corpus")
    assert [(u.path, u.split) for u in utts] == [("/corpus/x.wav", "validation"), ("/corpus/y.wav", "train")]


def test_manifest_gender_and_language_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,gender,language\na.wav,sad,F,German\nb.wav,sad,Male,\n"
                                    "c.wav,sad,,English\nd.wav,sad,Diverse,\n")
    utts = R.read_manifest(tmp_path / "m.csv")
    assert [(u.gender, u.language) for u in utts] == [("female", "German"), ("male", None), (None, "English"),
                                                      ("diverse", None)]
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "x.wav", "label": "sad", "gender": "woman",
                                                  "language": "Persian"}) + "\n")
    assert [(u.gender, u.language) for u in R.read_manifest(tmp_path / "m.jsonl")] == [("female", "Persian")]
    (tmp_path / "bad.csv").write_text("path,gender\na.wav,F\n")
    with pytest.raises(ManifestError, match=r"path,label\[,speaker\]\[,split\]\[,gender\]\[,language\]"):
        R.read_manifest(tmp_path / "bad.csv")


@pytest.mark.parametrize("name,text,line,problem", [
    ("m.csv", "path,speaker\na.wav,s\n", 1, "missing column"),
    ("m.csv", "path,label\na.wav,sad\n,happy\n", 3, "empty 'path' or 'label'"),
    ("m.csv", "path,label,split\na.wav,sad,train\nb.wav,sad,holdout\n", 3, "unknown split 'holdout'"),
    ("m.csv", "path,label,split\na.wav,sad,train\nb.wav,sad,\n", 3, "for some rows but not"),
    ("m.csv", "path,label\na.wav,sad\nb.wav,sad\na.wav,happy\n", 4, "listed twice"),
    ("m.jsonl", '{"path": "a.wav", "label": "sad"}\n{"path": "b.wav", label}\n', 2, "not valid JSON"),
    ("m.jsonl", '{"path": "a.wav", "label": "sad"}\n["b.wav", "sad"]\n', 2, "JSON object"),
])
def test_bad_manifest_rows_name_file_and_line(tmp_path, name, text, line, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=rf"{name}:{line}: .*{problem}"):
        R.read_manifest(tmp_path / name)


def test_missing_manifest(tmp_path):
    with pytest.raises(MissingSourceError, match="manifest not found"):
        R.read_manifest(tmp_path / "none.csv")
