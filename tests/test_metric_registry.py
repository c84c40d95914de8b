"""The metric registry: a metric registered once (here a toy "recall of class 0") reaches every output — the
per-corpus dict and its JSON, the bootstrap intervals, the Markdown table, the Table-2 comparison with its paired
tests, the protocol summary, the evaluation index and the paired tests; and Cohen's kappa, registered like any other,
agrees with scikit-learn."""

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from exhubert_jax.cli import evaluate_runs
from exhubert_jax.evaluation import (bootstrap as bs, metrics, output_folders as eo, paired_tests as paired, reports,
                                     statistics as analysis)
from exhubert_jax.evaluation.metrics import METRICS, Metric
from exhubert_jax.protocols import summary as ps

K = 4
NAMES = ["anger", "joy", "neutral", "sad"]
TOY = "recall_c0"


def _recall_of_class_0(cms: np.ndarray) -> np.ndarray:
    """Recall of class 0 of each (..., C, C) matrix; NaN without class-0 utterances."""
    cms = np.asarray(cms, np.float64)
    support = cms[..., 0, :].sum(axis=-1)
    return np.where(support > 0, cms[..., 0, 0] / np.where(support > 0, support, 1.0), np.nan)


@pytest.fixture
def toy_metric():
    """The toy metric, registered for one test and removed afterwards (also when the test fails)."""
    metric = metrics.register(Metric(TOY, "Recall(0)", _recall_of_class_0))
    try:
        yield metric
    finally:
        metrics.unregister(TOY)
    assert TOY not in METRICS


def _expected(y, p) -> float:
    """The toy metric computed by hand."""
    y, p = np.asarray(y), np.asarray(p)
    return float(np.mean(p[y == 0] == 0))


def _case(seed: int, n: int = 120, skill: float = 0.6):
    """Labels, predictions and speakers (8 speakers) of a synthetic test set."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    pred = np.where(rng.random(n) < skill, y, rng.integers(0, K, n))
    return y, pred, [f"s{i % 8}" for i in range(n)]


def _result(corpus: str, y, pred, speakers) -> dict:
    """An evaluate_corpus-shaped result."""
    utts = [{"index": i, "file": f"{corpus}/{i}.wav", "speaker": s, "label": int(t), "pred": int(q)}
            for i, (t, q, s) in enumerate(zip(y, pred, speakers))]
    return {"corpus": corpus, "split": "test", "label_space": "emotion", "input": "masked",
            **metrics.summarize(y, pred, K, NAMES), "utterances": utts}


def test_registry_order_and_refusals(toy_metric):
    assert list(METRICS)[:4] == ["uar", "wa", "macro_f1", "kappa"] and list(METRICS)[-1] == TOY
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(Metric("uar", "UAR again", _recall_of_class_0))
    with pytest.raises(ValueError, match="identifier"):
        metrics.register(Metric("not a key", "x", _recall_of_class_0))


def test_one_function_gives_the_point_value_and_the_stack(toy_metric):
    rng = np.random.default_rng(0)
    cms = rng.integers(0, 5, size=(3, 7, K, K)).astype(float)
    cms[0, :, 0, :] = 0  # no class-0 utterance: undefined
    stacked = toy_metric.of_confusions(cms)
    assert stacked.shape == (3, 7) and np.isnan(stacked[0]).all()
    for i in range(1, 3):
        for j in range(7):
            assert stacked[i, j] == toy_metric.value(cms[i, j])


def test_toy_metric_in_per_corpus_results_and_intervals(toy_metric):
    y, pred, spk = _case(1)
    s = metrics.summarize(y, pred, K, NAMES)
    assert list(s)[:6] == ["n", "uar", "wa", "macro_f1", "kappa", TOY]
    assert s[TOY] == pytest.approx(_expected(y, pred))
    assert json.loads(json.dumps(s))[TOY] == s[TOY]
    info, samples = bs.resampled(y, pred, K, spk, 300, seed=0, name="x")
    lo, hi = info[TOY]
    assert lo <= s[TOY] <= hi and samples[TOY].shape == (300,) and info["method"].startswith("cluster")
    # the UAR draws are those of the registry without the toy metric: adding a metric changes no other interval
    assert bs.intervals(y, pred, K, spk, 300, seed=0, name="x")[0]["uar"] == info["uar"]
    r = _result("x", y, pred, spk)
    got = analysis.add_metric_intervals(r, 300, seed=0)
    assert r["intervals"][TOY] == info[TOY] and set(got) == set(METRICS)


def test_toy_metric_in_the_markdown_table(toy_metric):
    results = []
    for i, corpus in enumerate(("a", "b")):
        y, pred, spk = _case(2 + i)
        results.append(_result(corpus, y, pred, spk))
    samples = [analysis.add_metric_intervals(r, 200, seed=0) for r in results]
    averages = analysis.average_intervals(samples)
    lines = reports.markdown_table(results, averages["uar"], averages).splitlines()
    assert lines[0] == ("| Corpus | # utterances | UAR (%) | WA (%) | Macro-F1 (%) | Kappa | Recall(0) (%) | "
                        "Resampled unit |")
    a = results[0]
    lo, hi = a["intervals"][TOY]
    assert lines[2].startswith(f"| a | 120 | {100 * a['uar']:.1f} [")
    assert lines[2].endswith(f"| {100 * a[TOY]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | speakers (8) |")
    mean = (results[0][TOY] + results[1][TOY]) / 2
    lo, hi = averages[TOY]
    assert lines[4].startswith("| **Average over all datasets** | 240 |")
    assert f"| {100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | corpora independently |" in lines[4]


def test_toy_metric_in_the_comparison_and_its_paired_tests(toy_metric):
    full, samples, cells = {"A": {}, "B": {}}, {"A": [], "B": []}, []
    for i, corpus in enumerate(("c1", "c2")):
        y, pred_a, spk = _case(10 + i, skill=0.4)
        pred_b = np.where(np.random.default_rng(i).random(y.size) < 0.5, y, pred_a)  # B corrects half of A
        for column, pred in (("A", pred_a), ("B", pred_b)):
            r = _result(corpus, y, pred, spk)
            samples[column].append(analysis.add_metric_intervals(r, 200, seed=0))
            full[column][corpus] = r
            cells.append(evaluate_runs.comparison_cell(f"/runs/{column}", column, corpus, "emotion", r))
    assert all(c[TOY] == full[c["column"]][c["corpus"]][TOY] for c in cells)
    report = evaluate_runs.comparison_report(full, samples, {"A": 1e6, "B": 2e6}, "A", 200, seed=0)
    table = report["table"]
    assert "Recall(0) (%)\n\n| Dataset | A | B |" in table and "| **Average Recall(0) over all datasets** |" in table
    assert "| **Average UAR over all datasets** |" in table and table.index("UAR (%)") < table.index("Recall(0) (%)")
    b = full["B"]["c1"]
    lo, hi = b["intervals"][TOY]
    assert f"{100 * b[TOY]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" in table
    assert set(report["average_intervals"]["B"]) == set(METRICS) and report["average_intervals"]["B"][TOY]
    rows = {r["corpus"]: r for r in report["paired"]}
    assert set(rows) == {"c1", "c2", "average"}
    for corpus in ("c1", "c2"):
        e = rows[corpus]["metrics"][TOY]
        assert e["diff"] == pytest.approx(full["B"][corpus][TOY] - full["A"][corpus][TOY])
        assert e["interval"][0] <= e["diff"] <= e["interval"][1] and 1 / 201 <= e["p"] <= e["p_holm"] <= 1
        assert rows[corpus]["diff"] == rows[corpus]["metrics"]["uar"]["diff"]  # UAR's stay at the top level
    assert rows["average"]["metrics"][TOY]["diff"] == pytest.approx(
        (rows["c1"]["metrics"][TOY]["diff"] + rows["c2"]["metrics"][TOY]["diff"]) / 2)
    assert "| Dataset | run | ΔRecall(0) vs A (points) | 95 % CI | p | p (Holm) |" in table
    assert f"| c1 | B | {100 * rows['c1']['metrics'][TOY]['diff']:+.1f} |" in table
    json.dumps(report)


def test_toy_metric_in_the_paired_test(toy_metric):
    y, a, spk = _case(20, n=300, skill=0.3)
    b = np.where(y == 0, 0, a)  # B always gets class 0 right
    row, boots = paired.compare_metrics(y, np.vstack([a, b]), K, spk, 300, seed=0)
    e = row["metrics"][TOY]
    assert e["diff"] == pytest.approx(1 - _expected(y, a)) and e["p"] < 0.05 and e["interval"][0] > 0
    assert set(boots) == set(METRICS) and boots[TOY].shape == (300,)
    rows = paired.add_holm([row, paired.compare_metrics(y, np.vstack([a, a]), K, spk, 300, seed=1)[0]])
    assert rows[0]["metrics"][TOY]["significant"] and rows[1]["metrics"][TOY] == {
        "diff": 0.0, "interval": [0.0, 0.0], "p": 1.0, "p_holm": 1.0, "significant": False}


def test_toy_metric_in_the_protocol_summary(toy_metric):
    runs, by_hand = [], []
    for i in range(3):
        y, pred, _ = _case(30 + i, n=60)
        ev = {"uar": metrics.uar(y, pred, K), "targets": y.tolist(), "preds": pred.tolist(), "class_names": NAMES,
              "n": len(y)}  # what the runner stores: UAR only; the others come from targets and predictions
        runs.append({"run": f"f{i}", "corpus": "c", "evaluations": {"test": ev}, "test_speakers_disjoint": True})
        by_hand.append(_expected(y, pred))
    s = ps.summarize(runs, ["test"])["test"]
    t = s["metrics"][TOY]
    assert t["mean"] == pytest.approx(np.mean(by_hand)) and t["sd"] == pytest.approx(np.std(by_hand, ddof=1))
    assert t["mean_interval"][0] <= t["mean"] <= t["mean_interval"][1] and set(t["runs_intervals"]) == {"f0", "f1", "f2"}
    y_all = np.concatenate([r["evaluations"]["test"]["targets"] for r in runs])
    p_all = np.concatenate([r["evaluations"]["test"]["preds"] for r in runs])
    assert t["pooled"] == pytest.approx(_expected(y_all, p_all))
    assert s["mean"] == s["metrics"]["uar"]["mean"] and set(s["metrics"]) == set(METRICS)
    text = ps.table(runs, ["test"], {"test": s}, "fold")
    assert "| test UAR (%) | test WA (%) | test Macro-F1 (%) | test Kappa | test Recall(0) (%) |" in text
    mean_row = next(line for line in text.splitlines() if line.startswith("| mean ± sd"))
    assert mean_row.endswith(f"| {100 * t['mean']:.1f} ± {100 * t['sd']:.1f} [{100 * t['mean_interval'][0]:.1f}, "
                             f"{100 * t['mean_interval'][1]:.1f}] |")
    json.dumps(s)


def test_toy_metric_in_the_evaluation_index(toy_metric, tmp_path):
    results = [_result(c, *_case(40 + i)) for i, c in enumerate(("a", "b"))]
    (tmp_path / "ab-test-masked-emotion").mkdir()
    means = eo.means(results)
    assert list(means) == list(METRICS) and means["uar"] == eo.mean_uar(results)
    eo.record(tmp_path, {"corpora": ["a", "b"], "split": "test", "input": "masked", "labels": "emotion",
                         "checkpoint": "c", "mean_uar": means["uar"], "means": means, "path": "ab-test-masked-emotion",
                         "main": "results.md", "files": ["results.md"]})
    (entry,) = eo.read_index(tmp_path)
    assert entry["means"][TOY] == pytest.approx((results[0][TOY] + results[1][TOY]) / 2)
    md = (tmp_path / "index.md").read_text().splitlines()
    assert "| mean UAR (%) | mean WA (%) | mean Macro-F1 (%) | mean Kappa | mean Recall(0) (%) |" in md[2]
    assert f"| {100 * means['uar']:.1f} |" in md[4] and f"| {100 * means[TOY]:.1f} | `c` |" in md[4]


# ----------------------------------------------------------------------------------------------------------------
# Cohen's kappa
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, weighted", [(0, False), (1, False), (2, True), (3, True)])
def test_kappa_matches_sklearn(seed, weighted):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, 150)
    pred = np.where(rng.random(150) < 0.5, y, rng.integers(0, K, 150))
    w = rng.random(150) * 2 if weighted else None
    expected = skm.cohen_kappa_score(y, pred, sample_weight=w)
    assert metrics.kappa(y, pred, K, weights=w) == pytest.approx(expected, abs=1e-12)
    assert metrics.summarize(y, pred, K, weights=w)["kappa"] == pytest.approx(expected, abs=1e-12)
    cm = metrics.confusion_matrix(y, pred, K, w)
    assert bs.kappa_many(np.stack([cm, cm]))[1] == pytest.approx(expected, abs=1e-12)
    assert metrics.kappa(y, y, K) == 1.0 and metrics.kappa([0, 0, 1, 1], [1, 1, 0, 0], K) == -1.0


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: a single label / undefined kappa
def test_kappa_is_undefined_when_chance_agreement_is_one():
    """p_e = 1 (every utterance of one class, every prediction that class): NaN, as sklearn's default."""
    y = [2, 2, 2]
    assert math.isnan(metrics.kappa(y, y, K)) and math.isnan(skm.cohen_kappa_score(y, y))
    assert metrics.kappa([2, 2, 2], [2, 2, 1], K) == pytest.approx(skm.cohen_kappa_score([2, 2, 2], [2, 2, 1]))
    assert math.isnan(metrics.kappa([], [], K))
    r = {"corpus": "one-class", **metrics.summarize(y, y, K, NAMES)}
    ok = {"corpus": "ok", **metrics.summarize([0, 1, 2, 3], [0, 1, 2, 0], K, NAMES)}
    lines = reports.markdown_table([r, ok]).splitlines()
    assert lines[2] == "| one-class | 3 | 100.0 | 100.0 | 100.0 | – |"
    assert lines[4].endswith("| 0.667 |")  # the average leaves the undefined corpus out
    assert "–: undefined (Kappa when every utterance is of one class and every prediction is that class)." in lines
    info, samples = bs.resampled(y, y, K, None, 50, seed=0)
    assert info["kappa"] is None and np.isnan(samples["kappa"]).all() and info["uar"] == [1.0, 1.0]
