"""Evaluation folders and their index: names, whole-folder replacement, index entries."""

import json
from pathlib import Path

import pytest

from exhubert_jax.evaluation import output_folders as eo


def test_run_names():
    assert eo.run_name("demo", "test", "masked", ["emotion", "emotion"]) == "demo-test-masked-emotion"
    assert eo.run_name("emodb, ravdess,emodb", "validation", "card", ["native", "emotion"]) == \
        "emodb+ravdess-validation-card-emotion+native"
    long = ",".join(f"corpus{i:02d}" for i in range(12))
    tag = eo.corpora_tag(long)
    assert tag.startswith("12-corpora-") and len(tag) == len("12-corpora-") + 8 and tag == eo.corpora_tag(long)
    assert tag != eo.corpora_tag(long + ",corpus99")


def test_a_failed_evaluation_leaves_the_previous_folder(tmp_path):
    with eo.run_folder(tmp_path, "demo-test-masked-emotion") as tmp:
        (tmp / "results.md").write_text("old")
    with pytest.raises(RuntimeError), eo.run_folder(tmp_path, "demo-test-masked-emotion") as tmp:
        (tmp / "results.md").write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "demo-test-masked-emotion" / "results.md").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["demo-test-masked-emotion"]


def test_index_replaces_the_same_folder_and_drops_removed_ones(tmp_path):
    def entry(path, uar):
        (tmp_path / path).mkdir(exist_ok=True)
        return {"corpora": ["demo-a"], "split": "test", "input": "masked", "labels": "emotion", "checkpoint": "c",
                "mean_uar": uar, "path": path, "main": "results.md", "files": ["results.md"]}

    eo.record(tmp_path, entry("a-test-masked-emotion", 0.5))
    eo.record(tmp_path, entry("a-test-card-emotion", 0.25))
    eo.record(tmp_path, entry("a-test-masked-emotion", 0.75))
    runs = eo.read_index(tmp_path)
    assert [(e["path"], e["mean_uar"]) for e in runs] == [("a-test-card-emotion", 0.25),
                                                          ("a-test-masked-emotion", 0.75)]
    (tmp_path / "a-test-card-emotion").rmdir()
    eo.record(tmp_path, entry("b-test-masked-emotion", None))
    assert [e["path"] for e in eo.read_index(tmp_path)] == ["a-test-masked-emotion", "b-test-masked-emotion"]
    md = (tmp_path / "index.md").read_text().splitlines()
    assert md[4].startswith("| ") and "b-test-masked-emotion/results.md" in md[4] and "| – |" in md[4]
    assert "75.0" in md[5] and json.loads((tmp_path / "index.json").read_text())["runs"][0]["time"].endswith("Z")
    # every registered metric has a column; entries written with only mean_uar show '–' for the others
    assert md[2].startswith("| time (UTC) | corpora | split | input | labels | mean UAR (%) | mean WA (%) | "
                            "mean Macro-F1 (%) | mean Kappa |")
    assert "| 75.0 | – | – | – | `c` |" in md[5]
    (tmp_path / "c-test-masked-emotion").mkdir()
    eo.record(tmp_path, {**entry("c-test-masked-emotion", 0.5), "means": {"uar": 0.5, "wa": 0.25, "kappa": -0.125}})
    md = (tmp_path / "index.md").read_text().splitlines()
    assert "| 50.0 | 25.0 | – | -0.125 | `c` |" in md[4]


def test_mean_uar_skips_undefined_corpora():
    assert eo.mean_uar([{"uar": 0.5}, {"uar": float("nan")}, {"uar": 1.0}]) == 0.75
    assert eo.mean_uar([{"uar": float("nan")}]) is None
    means = eo.means([{"uar": 0.5, "kappa": float("nan")}, {"uar": 1.0, "kappa": 0.5}])  # results lack wa, macro_f1
    assert means == {"uar": 0.75, "wa": None, "macro_f1": None, "kappa": 0.5, **{k: None for k in list(means)[4:]}}


def test_evaluations_of_a_hub_id_go_to_the_working_directory_not_the_cache(tmp_path, monkeypatch):
    """--out wins; a local checkpoint keeps CHECKPOINT/eval; a Hub id's evaluations go to eval/ORG--NAME[@REV] in the
    working directory, never into the cache its checkpoint was resolved to."""
    from exhubert_jax.evaluation.output_folders import eval_root

    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache" / "converted" / "models--org--name" / "abc123"
    assert eval_root("mine", "org/name", cache) == Path("mine")
    assert eval_root(None, "org/name", cache) == Path("eval/org--name")
    assert eval_root(None, "org/name@v2", cache) == Path("eval/org--name@v2")
    (tmp_path / "runs" / "finetune").mkdir(parents=True)
    assert eval_root(None, "runs/finetune", tmp_path / "runs/finetune/best") == tmp_path / "runs/finetune/best/eval"
