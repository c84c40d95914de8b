"""Results per group (evaluation.groups, evaluate.py --by): each group's metrics and intervals, the small-group rule,
the permutation test of the gap (calibrated under a null, by whole speakers when groups are speaker-level), and the
command on a manifest corpus with a gender column."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import evaluate
from exhubert_jax import init_params, preset, save_pretrained
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.evaluation import bootstrap as bs, groups, metrics, reports

CLASSES = ["anger", "happiness", "neutral", "sadness", "surprise", "fear"]


def result(corpus, labels, preds, speakers=None, genders=None, languages=None, classes=CLASSES):
    """An evaluate_corpus-shaped result of these utterances."""
    n = len(labels)
    speakers, genders, languages = (v if v is not None else [None] * n for v in (speakers, genders, languages))
    utts = [{"index": i, "label": int(y), "pred": int(p), "speaker": s, "gender": g, "language": lang}
            for i, (y, p, s, g, lang) in enumerate(zip(labels, preds, speakers, genders, languages))]
    return {"corpus": corpus, "split": "test", "class_names": list(classes), "utterances": utts}


def null_data(rng, n=120, speaker_effect=0.0, n_speakers=12):
    """Labels, predictions and speakers where accuracy depends on the speaker (by speaker_effect) but not on the
    group; speakers 0..n_speakers-1, each in group speaker % 2."""
    speakers = rng.integers(0, n_speakers, n)
    skill = np.clip(0.5 + speaker_effect * rng.standard_normal(n_speakers), 0.02, 0.98)
    y = rng.integers(0, 4, n)
    right = rng.random(n) < skill[speakers]
    pred = np.where(right, y, (y + rng.integers(1, 4, n)) % 4)
    return y, pred, speakers


def test_parse_by_validates_and_orders():
    assert groups.parse_by("speaker, Gender,gender") == ["gender", "speaker"]
    for bad, said in (("age", "unknown age"), ("gender,dialect", "unknown dialect"), (" , ", "no grouping")):
        with pytest.raises(groups.GroupingError, match=f"{said}.*choose from gender, language, corpus, speaker"):
            groups.parse_by(bad)


def test_p_values_are_uniform_under_the_null_and_small_for_a_planted_gap():
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(200):
        y, pred, _ = null_data(rng)
        g = rng.integers(0, 2, len(y))
        ps.append(groups.permutation_gap(y, pred, g, [None] * len(y), 4, 99, rng)["p"])
    ps = np.asarray(ps)
    assert 0.01 <= np.mean(ps <= 0.05) <= 0.1 and 0.2 <= np.mean(ps <= 0.25) <= 0.3
    assert 0.44 <= ps.mean() <= 0.56
    y = rng.integers(0, 4, 200)
    g = np.repeat([0, 1], 100)
    pred = np.where((g == 0) | (rng.random(200) < 0.4), y, (y + 1) % 4)  # group 0 always right, group 1 40 %
    test = groups.permutation_gap(y, pred, g, [None] * 200, 4, 199, rng)
    assert test["p"] == pytest.approx(1 / 200) and test["uar_gap"] > 0.4 and test["unit"] == "utterance"


def test_speaker_level_groups_permute_whole_speakers():
    """With strong speaker effects and no group effect, permuting utterances finds gaps that are speaker effects;
    permuting whole speakers (what the test does when every speaker lies in one group) stays calibrated."""
    rng = np.random.default_rng(1)
    by_speaker, by_utterance = [], []
    for _ in range(100):
        y, pred, spk = null_data(rng, n=240, speaker_effect=0.3)
        g = spk % 2
        test = groups.permutation_gap(y, pred, g, list(spk), 4, 99, rng)
        assert test["unit"] == "speaker" and "whole speakers" in test["method"]
        by_speaker.append(test["p"])
        by_utterance.append(groups.permutation_gap(y, pred, g, [None] * len(y), 4, 99, rng)["p"])
    assert np.mean(np.asarray(by_speaker) <= 0.05) <= 0.1  # 6 of 100 here
    assert np.mean(np.asarray(by_utterance) <= 0.05) >= 0.3  # 42 of 100 here
    assert groups.permutation_unit(np.array([0, 0, 1]), ["a", "b", "b"])[0] == "utterance"  # b in both groups
    assert groups.permutation_unit(np.array([0, 1]), ["a", "b"]) == (
        "utterance", "one speaker per group: permuting speakers would only rename the groups")


def test_groups_intervals_small_groups_and_unknown():
    rng = np.random.default_rng(2)
    n = 60
    y, pred = rng.integers(0, 6, n), rng.integers(0, 6, n)
    genders = ["female"] * 40 + ["male"] * 12 + [None] * 8
    speakers = [f"f{i % 5}" for i in range(40)] + [f"m{i % 2}" for i in range(12)] + [None] * 8
    doc = groups.by_groups([result("c", y, pred, speakers, genders)], ["gender"], 200, 0)
    (table,) = doc["tables"]
    rows = {r["group"]: r for r in table["groups"]}
    assert list(rows) == ["female", "male", "unknown"] and table["scope"] == "c"
    female, male, unknown = rows["female"], rows["male"], rows["unknown"]
    assert (female["n"], female["n_speakers"], male["n_speakers"], unknown["n_speakers"]) == (40, 5, 2, None)
    assert female["intervals"]["unit"] == "cluster" and female["no_interval"] is None
    assert female["uar"] == pytest.approx(metrics.uar(y[:40], pred[:40], 6))
    for k in metrics.METRICS:  # every registered metric, with an interval
        assert k in female and female["intervals"][k] is not None
    assert male["intervals"] is None and male["no_interval"] == (
        f"too small for an interval: 12 utterances (fewer than {groups.MIN_UTTERANCES}) of 2 known speakers "
        f"(fewer than {bs.MIN_CLUSTERS})")
    gap = table["gap"]
    assert gap["groups"] == ["female", "male"] and gap["left_out"] == ["unknown"] and gap["unit"] == "speaker"
    assert gap["difference"] == pytest.approx(female["uar"] - male["uar"]) and 0 < gap["p"] <= 1
    assert groups.by_groups([result("c", y, pred, speakers, genders)], ["gender"], 200, 0) == doc  # seeded
    text = reports.group_tables(doc)
    assert "| Gender | # utterances | # speakers | UAR (%)" in text and "| unknown (not in the gap) | 8 | – |" in text
    assert "UAR gap female - male:" in text and "permutation of whole speakers" in text
    assert "- male: too small for an interval" in text and "| male | 12 | 2 |" in text


def test_pooled_corpora_and_groupings():
    a = result("a", [0, 1, 2, 3], [0, 1, 1, 3], ["01", "01", "02", "02"], languages=["German"] * 4)
    b = result("b", [0, 1, 2, 3], [0, 0, 2, 3], ["01", "02", "03", "04"], languages=["English"] * 4)
    doc = groups.by_groups([a, b], ["language", "corpus", "speaker"], 50, 0)
    scopes = [(t["by"], t["scope"]) for t in doc["tables"]]
    assert scopes == [("language", "a"), ("language", "b"), ("language", "pooled"), ("corpus", "pooled"),
                      ("speaker", "a"), ("speaker", "b")]
    pooled = doc["tables"][2]
    assert [r["group"] for r in pooled["groups"]] == ["English", "German"] and pooled["corpora"] == ["a", "b"]
    assert pooled["groups"][1]["n_speakers"] == 2  # a/01, a/02: b's speaker 01 is another person
    assert doc["tables"][0]["gap"]["note"] == "1 known group: no gap to test"
    other = result("c", [0], [0], classes=["x", "y"])
    doc = groups.by_groups([a, other], ["corpus"], 0, 0)
    assert doc["tables"] == []
    assert doc["notes"] == ["the corpora are scored on different classes, so they are not pooled"]


def test_a_corpus_prepared_before_genders_warns_once():
    old = {**result("emodb", [0, 1], [0, 1]), "prepared_without_genders": "python -m exhubert_jax.data.prepare "
           "--corpus emodb --source /data/emodb"}
    doc = groups.by_groups([old], ["gender"], 0, 0)
    assert doc["warnings"] == [("emodb was prepared before genders were recorded, so its utterances count as gender "
                                "unknown; prepare it again: python -m exhubert_jax.data.prepare --corpus emodb "
                                "--source /data/emodb")]
    assert [r["group"] for r in doc["tables"][0]["groups"]] == ["unknown"]
    assert groups.by_groups([old], ["language"], 0, 0)["warnings"] == []


@pytest.fixture(scope="module")
def gendered(tmp_path_factory):
    """A manifest corpus with a gender column (4 speakers, 2 of each gender, 6 test utterances each), prepared, and
    a workdir holding a tiny random 6-class model."""
    root = tmp_path_factory.mktemp("gendered")
    rows, rng = ["path,label,speaker,gender,split"], np.random.default_rng(0)
    for s, gender in enumerate(("F", "female", "m", "Male")):
        for k in range(8):
            sf.write(root / f"s{s}_{k}.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)
            split = "test" if k < 6 else ("train", "validation")[k - 6]
            rows.append(f"s{s}_{k}.wav,{('angry', 'sad', 'neutral', 'happy')[k % 4]},spk{s},{gender},{split}")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    prepare_corpus("gendered", out=root / "prepared", manifest=root / "m.csv", progress=False, log=lambda m: None)
    cfg = preset("tiny")
    save_pretrained(root / "run" / "best", cfg, init_params(cfg, 0))
    return root


def test_evaluate_by_gender_json_on_a_manifest_corpus(gendered, capsys):
    argv = ["--corpus", "gendered", "--checkpoint", str(gendered / "run"), "--data-dir", str(gendered / "prepared"),
            "--out", str(gendered / "eval"), "--bootstrap", "50", "--by", "gender", "--quiet"]
    assert evaluate.main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (table,) = doc["groups"]["tables"]
    assert [(r["group"], r["n"], r["n_speakers"]) for r in table["groups"]] == [("female", 12, 2), ("male", 12, 2)]
    assert table["gap"]["groups"] == ["female", "male"] and table["gap"]["p"] is not None
    assert {u["gender"] for u in doc["results"][0]["utterances"]} == {"female", "male"}
    saved = json.loads((gendered / "eval" / "gendered-test-masked-emotion" / "results.json").read_text())
    assert saved["groups"] == doc["groups"] and "Per gender: gendered, test split" in doc["table"]


@pytest.mark.parametrize("extra, said", [(["--by", "age"], "--by 'age': unknown age"),
                                         (["--by", "gender", "--checkpoint", "a,b"], "--by needs --corpus")])
def test_bad_by_fails_before_any_work(tmp_path, capsys, extra, said):
    argv = ["--corpus", "demo", "--checkpoint", str(tmp_path / "none"), "--data-dir", str(tmp_path), *extra]
    assert evaluate.main(argv) == 2
    assert said in capsys.readouterr().err


def test_evaluate_by_gender_warns_about_a_corpus_prepared_before_genders(gendered, tmp_path, capsys):
    """Its index without genders (as prepare wrote it before recording them): one warning naming the command that
    prepares it again; its utterances form the unknown group."""
    data = shutil.copytree(gendered / "prepared", tmp_path / "prepared")
    meta_path = next((data / "gendered").glob("*/metadata.json"))
    meta = json.loads(meta_path.read_text())
    for index in meta["index"].values():
        del index["gender"]
    meta_path.write_text(json.dumps(meta))
    record = json.loads((data / "gendered/info.json").read_text())
    record["files"][meta_path.name] = meta_path.stat().st_size
    (data / "gendered/info.json").write_text(json.dumps(record))
    argv = ["--corpus", "gendered", "--checkpoint", str(gendered / "run"), "--data-dir", str(data),
            "--out", str(tmp_path / "eval"), "--bootstrap", "0", "--by", "gender", "--quiet", "--json"]
    assert evaluate.main(argv) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "before genders were recorded" in line]
    assert warning == [(f"warning: gendered was prepared before genders were recorded, so its utterances count as "
                        f"gender unknown; prepare it again: {record['command']}")]
    (table,) = json.loads(captured.out)["groups"]["tables"]
    assert [r["group"] for r in table["groups"]] == ["unknown"] and table["gap"]["uar_gap"] is None
