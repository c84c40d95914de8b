"""Evaluation library and CLI on a tiny random model and the synthetic demo corpora (prepared into tmp)."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import evaluate
from exhubert_jax import HubertForSequenceClassification, init_params, preset, save_pretrained
from exhubert_jax.data.audio import load_audio
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.loading import batching
from exhubert_jax.data.loading.dataset import PreparedCorpus, open_prepared
from exhubert_jax.data.loading.resolve import CorpusSpecError, resolve_corpora
from exhubert_jax.evaluation import calibration, metrics, reports as reporting, scoring as ev
from exhubert_jax.evaluation.predict import Predictor
from exhubert_jax.model.config import EMOTION_CLASSES
from exhubert_jax.pretrained import from_pretrained

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEMO = ("demo-a", "demo-b", "demo-c")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A training-workdir-shaped folder whose best/ holds a tiny random 6-class model."""
    root = tmp_path_factory.mktemp("run")
    cfg = preset("tiny")
    save_pretrained(root / "best", cfg, init_params(cfg, 0))
    return root


@pytest.fixture(scope="module")
def model_params(workdir):
    return from_pretrained(workdir / "best")


@pytest.fixture(scope="module")
def predict(model_params):
    """One jitted forward shared by the library tests (batch 8: every demo test split and chunk is (8, 48000))."""
    return Predictor(model_params[0])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    prepare_demo(root, seed=0, n_per_class=1, n_speakers=4, log=lambda msg: None)
    return root


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """8 kHz (2 s), 44.1 kHz (4.5 s, two chunks), 16 kHz (7 s, three chunks) and one corrupt file."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    t8 = np.arange(8000 * 2) / 8000
    sf.write(root / "a_8k.wav", (0.3 * np.sin(2 * np.pi * 220 * t8)).astype(np.float32), 8000)
    sf.write(root / "b_44k.flac", 0.1 * rng.standard_normal(int(44100 * 4.5)), 44100)
    sf.write(root / "c_16k.wav", (0.1 * rng.standard_normal(16000 * 7)).astype(np.float32), 16000,
             subtype="FLOAT")
    (root / "d_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00not really a wave file")
    return root


# --------------------------------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------------------------------


def test_evaluate_corpus_metrics_and_utterance_ids(model_params, predict, data_dir):
    model, params = model_params
    r = ev.evaluate_corpus(model, params, "demo-a", "test", batch_size=8, data_dir=data_dir, predictor=predict)
    split = open_prepared("demo-a", data_dir).split("test")
    utts = r["utterances"]
    assert r["corpus"] == "demo-a" and r["n"] == len(split) == len(utts)
    assert sorted(u["index"] for u in utts) == list(range(len(split)))
    y_true = [u["label"] for u in utts]
    y_pred = [u["pred"] for u in utts]
    assert y_true == [int(split.labels[u["index"]]) for u in utts]
    assert y_pred == [int(np.argmax(u["logits"])) for u in utts]
    assert r["uar"] == pytest.approx(metrics.uar(y_true, y_pred, 6))
    assert r["class_names"] == list(EMOTION_CLASSES)
    assert [u["speaker"] for u in utts] == [split[u["index"]]["speaker"] for u in utts]
    assert all(u["file"].endswith(".wav") for u in utts) and len({u["file"] for u in utts}) == len(utts)
    # Each utterance's logits equal a forward pass on its own audio in another batch (ids map to the right audio).
    for u in (utts[0], utts[-1]):
        audio = split[u["index"]]["audio"]
        x, mask = np.zeros((8, 48000), np.float32), np.ones((8, 48000), np.int32)
        x[0, :len(audio)], mask[0, len(audio):] = batching.normalize(audio), 0
        np.testing.assert_allclose(u["logits"], predict(params, x, mask)[0], atol=2e-4)


def test_one_compilation_per_bucket_shape(model_params, data_dir):
    model, params = model_params
    predict = Predictor(model)
    split = open_prepared("demo-a", data_dir).split("test")
    shapes = [b.input_values.shape for b in batching.eval_batches(split, 2)]
    expected = set(shapes)
    assert len(shapes) > len(expected) > 1  # several batches share a bucket, and there is more than one bucket
    ev.evaluate_corpus(model, params, "demo-a", batch_size=2, data_dir=data_dir, predictor=predict)
    assert len(predict.compiled_shapes) == len(set(predict.compiled_shapes)) == len(expected)
    assert set(predict.compiled_shapes) == expected
    ev.evaluate_corpus(model, params, "demo-a", batch_size=2, data_dir=data_dir, predictor=predict)
    assert len(predict.compiled_shapes) == len(expected)  # a second pass compiles nothing


def test_label_space_checks(data_dir):
    cfg = preset("tiny")
    native = open_prepared("demo-b", data_dir).native_labels
    with pytest.raises(ev.EvaluationError, match="native labels"):
        ev.check_label_space(cfg, "native", native, "demo-b")
    head = cfg.replace(num_labels=len(native), label_names=native)
    assert ev.check_label_space(head, "native", native, "demo-b") == list(native)
    with pytest.raises(ev.EvaluationError, match="--labels native"):
        ev.check_label_space(head, "emotion")


def test_native_label_evaluation(model_params, data_dir):
    native = open_prepared("demo-b", data_dir).native_labels
    assert len(native) == 6  # so the tiny model's parameters fit a head named after demo-b's native labels
    model = HubertForSequenceClassification(preset("tiny", label_names=native))
    r = ev.evaluate_corpus(model, model_params[1], "demo-b", batch_size=8, data_dir=data_dir,
                           label_space="native")
    split = open_prepared("demo-b", data_dir).split("test")
    assert r["class_names"] == list(native)
    assert [u["label"] for u in r["utterances"]] == [int(split.native_indices[u["index"]]) for u in r["utterances"]]


def test_predict_audio_rates_chunks_and_bad_file(model_params, audio_dir):
    model, params = model_params
    predict = Predictor(model)  # fresh, to count its compilations
    res = {r["file"].rsplit("/", 1)[-1]: r for r in ev.predict_audio(model, params, audio_dir, predictor=predict)}
    assert sorted(res) == ["a_8k.wav", "b_44k.flac", "c_16k.wav", "d_corrupt.wav"]
    assert "d_corrupt.wav" in res["d_corrupt.wav"]["file"] and "unreadable" in res["d_corrupt.wav"]["error"]
    assert [res[f]["chunks"] for f in ("a_8k.wav", "b_44k.flac", "c_16k.wav")] == [1, 2, 3]
    assert res["b_44k.flac"]["duration"] == pytest.approx(4.5, abs=1e-3)
    for f in ("a_8k.wav", "b_44k.flac", "c_16k.wav"):
        probs = res[f]["probabilities"]
        assert list(probs) == list(EMOTION_CLASSES) and sum(probs.values()) == pytest.approx(1.0)
        assert res[f]["top"] == max(probs, key=probs.get)
    assert predict.compiled_shapes == [(8, 48000)]  # every chunk of every file: one shape


def test_long_audio_is_length_weighted_mean_of_chunks(model_params, predict, audio_dir, tmp_path):
    model, params = model_params
    audio = load_audio(audio_dir / "c_16k.wav")
    pieces = ev.chunk_audio(audio, 48000)
    assert len(pieces) == 3 and max(map(len, pieces)) <= 48000 and sum(map(len, pieces)) == len(audio)
    for i, p in enumerate(pieces):
        sf.write(tmp_path / f"piece{i}.wav", p, 16000, subtype="FLOAT")
    per_chunk = [np.array(r["logits"]) for r in ev.predict_audio(model, params, tmp_path, predictor=predict)]
    whole = ev.predict_audio(model, params, audio_dir / "c_16k.wav", predictor=predict)[0]["logits"]
    expected = np.average(per_chunk, axis=0, weights=[len(p) for p in pieces])
    np.testing.assert_allclose(whole, expected, atol=1e-5)


def test_markdown_table_shape():
    names = list(EMOTION_CLASSES)
    a = {"corpus": "x", **metrics.summarize([0, 1, 2, 3], [0, 1, 2, 0], 6, names)}
    b = {"corpus": "y", **metrics.summarize([5, 5], [5, 4], 6, names)}
    table = reporting.markdown_table([a, b])
    lines = table.splitlines()
    assert lines[0] == "| Corpus | # utterances | UAR (%) | WA (%) | Macro-F1 (%) | Kappa |"
    assert lines[2] == "| x | 4 | 75.0 | 75.0 | 66.7 | 0.667 |"  # kappa (4 * 3 - 4) / (16 - 4)
    assert lines[3] == "| y | 2 | 50.0 | 50.0 | 33.3 | 0.000 |"
    assert lines[4] == "| **Average over all datasets** | 6 | 62.5 | 62.5 | 50.0 | 0.333 |"
    assert "| Recall (%) | " + " | ".join(names) + " |" in lines
    assert "| y | – | – | – | – | – | 50.0 |" in lines
    a["intervals"] = {"uar": [0.5, 1.0], "wa": [0.25, 1.0], "macro_f1": [0.4, 0.9], "short": "speakers (7)",
                      "resamples": 100, "seed": 0}
    lines = reporting.markdown_table([a, b], average_interval=[0.4, 0.8]).splitlines()
    assert lines[0].endswith("| Resampled unit |")
    assert lines[2] == ("| x | 4 | 75.0 [50.0, 100.0] | 75.0 [25.0, 100.0] | 66.7 [40.0, 90.0] | 0.667 | "
                        "speakers (7) |")  # no kappa interval in these (older) intervals: the value alone
    assert lines[3] == "| y | 2 | 50.0 | 50.0 | 33.3 | 0.000 | – |"
    assert lines[4].startswith("| **Average over all datasets** | 6 | 62.5 [40.0, 80.0] | 62.5 | 50.0 | 0.333 |")
    a["intervals"]["kappa"] = [0.5, 0.75]
    lines = reporting.markdown_table([a, b], average_intervals={"uar": [0.4, 0.8], "kappa": [0.1, 0.5]}).splitlines()
    assert "| 66.7 [40.0, 90.0] | 0.667 [0.500, 0.750] | speakers (7) |" in lines[2]
    assert lines[4].startswith("| **Average over all datasets** | 6 | 62.5 [40.0, 80.0] | 62.5 | 50.0 | "
                               "0.333 [0.100, 0.500] |")
    old = {k: v for k, v in b.items() if k != "kappa"}  # a result written before kappa was registered
    assert reporting.markdown_table([old]).splitlines()[2] == "| y | 2 | 50.0 | 50.0 | 33.3 | – |"


def test_resolve_corpora(data_dir):
    assert resolve_corpora("demo", data_dir) == list(DEMO)
    assert resolve_corpora("all", data_dir) == list(DEMO)
    assert resolve_corpora("demo-b, demo-a,demo-b", data_dir) == ["demo-b", "demo-a"]
    with pytest.raises(CorpusSpecError, match="none of the unseen corpora"):
        resolve_corpora("unseen", data_dir)


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def test_cli_json_and_files(workdir, data_dir, tmp_path, capsys):
    out = tmp_path / "eval" / "demo-test-masked-emotion"
    code = evaluate.main(["--corpus", "demo", "--checkpoint", str(workdir), "--data-dir", str(data_dir),
                          "--out", str(tmp_path / "eval"), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)  # stdout is exactly one JSON document
    assert doc["out"] == str(out) and doc["index"] == str(tmp_path / "eval" / "index.md")
    assert doc["checkpoint"].endswith("best") and [r["corpus"] for r in doc["results"]] == list(DEMO)
    for r in doc["results"]:
        assert len(r["utterances"]) == r["n"] == 6 and len(r["utterances"][0]["logits"]) == 6
        assert (out / f"confusion_{r['corpus']}.png").read_bytes()[:8] == PNG_MAGIC
        cm = json.loads((out / f"confusion_{r['corpus']}.json").read_text())["confusion_matrix"]
        assert np.sum(cm) == 6
    assert json.loads((out / "results.json").read_text())["results"][0]["uar"] == doc["results"][0]["uar"]
    assert "**Average over all datasets**" in (out / "results.md").read_text()


def test_cli_table_default_out(workdir, data_dir, capsys):
    code = evaluate.main(["--corpus", "demo-c", "--checkpoint", str(workdir), "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 0
    run = workdir / "best" / "eval" / "demo-c-test-masked-emotion"
    assert "| demo-c (!) | 6 |" in out and "UAR (%)" in out and str(run) in out  # 1 utterance per class: a caveat
    caveat = "fewer than 5 examples of each of its 6 classes (1 each): one utterance moves a class's recall by up to 100"
    assert f"(!) demo-c, test split: {caveat} points" in out and f"warning: demo-c, test split: {caveat}" in err
    assert (run / "confusion_demo-c.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("argv, message", [
    (["--corpus", "demo", "--checkpoint", "{tmp}/missing"], "does not exist"),
    (["--corpus", "aesi", "--checkpoint", "{run}"], "python -m exhubert_jax.data.prepare --corpus aesi"),
    (["--corpus", "demo-a", "--checkpoint", "{run}", "--labels", "native"], "native labels"),
    (["--audio", "{tmp}/nothing_here", "--checkpoint", "{run}"], "--audio {tmp}/nothing_here does not exist"),
])
def test_cli_errors_exit_2_without_traceback(argv, message, workdir, data_dir, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, run=workdir) for a in argv] + ["--data-dir", str(data_dir)]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    if "aesi" in argv:
        assert "demo-a, demo-b, demo-c" in err  # lists what is prepared


@pytest.mark.parametrize("argv, message", [
    (["--corpus", "demo", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--corpus", "demo", "--bootstrap", "-1"], "--bootstrap must not be negative, got -1"),
    (["--audio", "x.wav", "--chunk-seconds", "0"], "--chunk-seconds must be positive, got 0.0"),
    (["--audio", "x.wav", "--chunk-seconds", "nan"], "--chunk-seconds must be a finite number, got nan"),
    (["--audio", "x.wav", "--timeline", "--window", "nan"], "--window must be a finite number, got nan"),
    (["--audio", "x.wav", "--timeline", "--hop", "0"], "--hop must be positive, got 0.0"),
])
def test_cli_bad_flag_values_are_refused_before_any_model_or_data(argv, message, tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("a model was loaded or data read before the flags were checked")

    import exhubert_jax.data.loading.resolve
    import exhubert_jax.pretrained

    monkeypatch.setattr(exhubert_jax.pretrained, "from_pretrained", never)
    monkeypatch.setattr(exhubert_jax.data.loading.resolve, "resolve_corpora", never)
    monkeypatch.setattr(ev, "check_audio_path", never)
    assert evaluate.main([*argv, "--checkpoint", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {message}"]


def test_cli_audio_json_and_bad_file(workdir, audio_dir, capsys):
    code = evaluate.main(["--audio", str(audio_dir), "--checkpoint", str(workdir), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed, the others were predicted
    doc = json.loads(captured.out)
    ok = [f for f in doc["files"] if "error" not in f]
    assert len(ok) == 3 and all(len(f["logits"]) == 6 for f in ok)
    assert "d_corrupt.wav" in captured.err and "unreadable" in captured.err


def test_cli_audio_table(workdir, audio_dir, capsys):
    assert evaluate.main(["--audio", str(audio_dir / "a_8k.wav"), "--checkpoint", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "| File | Top class | low_negative |" in out and "a_8k.wav" in out


def test_cli_intervals_in_json_and_table(workdir, data_dir, tmp_path, capsys):
    argv = ["--corpus", "demo-a,demo-b", "--checkpoint", str(workdir), "--data-dir", str(data_dir),
            "--out", str(tmp_path), "--bootstrap", "200", "--seed", "3"]
    assert evaluate.main(argv + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for r in doc["results"]:
        ci = r["intervals"]
        assert ci["resamples"] == 200 and ci["seed"] == 3 and ci["unit"] == "utterance" and ci["n_speakers"] == 1
        assert ci["method"].startswith("utterance bootstrap (only 1 speaker")
        for k in ("uar", "wa", "macro_f1"):
            assert ci[k][0] <= r[k] <= ci[k][1]
        assert set(metrics.METRICS) <= set(r) and set(metrics.METRICS) <= set(ci)  # every registered metric
    lo, hi = doc["average_uar_interval"]
    assert lo <= np.mean([r["uar"] for r in doc["results"]]) <= hi
    assert doc["average_intervals"]["uar"] == doc["average_uar_interval"]
    assert set(doc["average_intervals"]) == set(metrics.METRICS)
    table = doc["table"]
    assert "Resampled unit" in table and "utterances (1 speaker)" in table and "200 bootstrap resamples" in table
    assert evaluate.main(argv[:-4] + ["--bootstrap", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["average_uar_interval"] is None and all("intervals" not in r for r in doc["results"])
    assert "Resampled unit" not in doc["table"] and "[" not in doc["table"]


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory, data_dir):
    """A second tiny 6-class run (another init) and a run whose head has demo-b's native labels."""
    root = tmp_path_factory.mktemp("others")
    cfg = preset("tiny")
    save_pretrained(root / "b" / "best", cfg, init_params(cfg, 1))
    native = open_prepared("demo-b", data_dir).native_labels
    save_pretrained(root / "native" / "best", preset("tiny", label_names=native), init_params(cfg, 0))
    return root


@pytest.mark.slow
def test_cli_paired_comparison_against_a_baseline(workdir, other_runs, data_dir, capsys):
    b = str(other_runs / "b")
    argv = ["--corpus", "demo-a,demo-b", "--checkpoint", f"{workdir},{b}", "--baseline", str(workdir),
            "--data-dir", str(data_dir), "--bootstrap", "200"]
    assert evaluate.main(argv + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["corpus"]: r for r in doc["paired"]}
    assert set(rows) == {"demo-a", "demo-b", "average"} and all(r["column"] == b for r in rows.values())
    uar = {(c["column"], c["corpus"]): c["uar"] for c in doc["cells"]}
    for corpus in ("demo-a", "demo-b"):
        r = rows[corpus]
        assert r["diff"] == pytest.approx(uar[b, corpus] - uar[str(workdir), corpus])
        assert 1 / 201 <= r["p"] <= r["p_holm"] <= 1 and r["interval"][0] <= r["diff"] <= r["interval"][1]
    assert rows["average"]["diff"] == pytest.approx((rows["demo-a"]["diff"] + rows["demo-b"]["diff"]) / 2)
    assert all(len(v) == 2 for v in doc["average_uar_intervals"].values())
    assert all(set(r["metrics"]) == set(metrics.METRICS) for r in rows.values())
    assert all(set(metrics.METRICS) <= set(c) for c in doc["cells"])
    assert "| **Average Kappa over all datasets** |" in doc["table"] and "ΔKappa vs" in doc["table"]
    assert "p (Holm)" in doc["table"] and "after Holm's correction over the 2 corpora" in doc["table"]


@pytest.mark.parametrize("extra, message", [
    (["--baseline", "elsewhere"], "--baseline elsewhere is not one of the --checkpoint runs"),
    (["--bootstrap", "0"], "--baseline needs resamples"),
    (["--bootstrap", "-5"], "--bootstrap must not be negative, got -5"),
])
def test_cli_baseline_option_errors(extra, message, workdir, data_dir, capsys):
    argv = ["--corpus", "demo-a", "--checkpoint", f"{workdir},{workdir}-other", "--baseline", str(workdir),
            "--data-dir", str(data_dir)]
    assert evaluate.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_refuses_to_pair_different_test_sets(workdir, other_runs, data_dir, capsys):
    native = str(other_runs / "native")
    argv = ["--corpus", "demo-b", "--checkpoint", f"{workdir},{native}", "--baseline", str(workdir),
            "--data-dir", str(data_dir), "--bootstrap", "50"]
    assert evaluate.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "different test sets (label spaces emotion" in err[0] and "native" in err[0]


@pytest.fixture()
def calibrated_run(workdir, tmp_path):
    """A copy of the tiny run, so that its temperature.json does not reach the other tests."""
    root = tmp_path / "cal"
    shutil.copytree(workdir / "best", root / "best")
    return root


@pytest.mark.slow
def test_cli_calibrate_fits_on_validation_and_later_runs_apply_it(calibrated_run, data_dir, audio_dir, tmp_path,
                                                                   capsys):
    argv = ["--corpus", "demo-a,demo-b", "--checkpoint", str(calibrated_run), "--data-dir", str(data_dir),
            "--out", str(tmp_path / "e"), "--bootstrap", "0", "--json"]
    assert evaluate.main(argv + ["--calibrate"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    t = doc["temperature"]
    assert t["fitted_on"] == {"demo-a": 6, "demo-b": 6} and t["split"] == "validation"
    assert t["validation_nll"]["after"] <= t["validation_nll"]["before"] and "fitted temperature" in captured.err
    assert json.loads((calibrated_run / "best" / "temperature.json").read_text())["temperature"] == t["temperature"]
    for r in doc["results"]:
        assert r["calibration"]["temperature"] == t["temperature"] and r["calibration_before"]["temperature"] == 1
        logits = np.array([u["logits"] for u in r["utterances"]])
        y = [u["label"] for u in r["utterances"]]
        assert r["calibration"]["nll"] == pytest.approx(calibration.nll(logits, y, t["temperature"]))
        assert (tmp_path / "e" / "demo-a+demo-b-test-masked-emotion" / f"reliability_{r['corpus']}.png"
                ).read_bytes()[:8] == PNG_MAGIC
    assert "T = 1 → fitted T" in doc["table"]
    assert evaluate.main(argv) == 0  # a later evaluation applies the stored temperature and says so
    later = json.loads(capsys.readouterr().out)
    assert all(r["calibration"] == d["calibration"] for r, d in zip(later["results"], doc["results"]))
    assert "calibration_before" not in later["results"][0] and "Calibration at temperature" in later["table"]
    assert evaluate.main(["--audio", str(audio_dir / "a_8k.wav"), "--checkpoint", str(calibrated_run), "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["temperature"]["temperature"] == t["temperature"]
    probs = ev.softmax(np.array(f["files"][0]["logits"]) / t["temperature"])
    assert list(f["files"][0]["probabilities"].values()) == pytest.approx(list(probs))


def test_cli_calibrate_refusals(workdir, data_dir, monkeypatch, capsys):
    argv = ["--corpus", "demo-a", "--checkpoint", str(workdir), "--data-dir", str(data_dir), "--calibrate"]
    assert evaluate.main(argv + ["--split", "validation"]) == 2
    assert "use --split test" in capsys.readouterr().err
    monkeypatch.setattr(PreparedCorpus, "splits", property(lambda self: ("train", "test")))
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "demo-a has no validation split (splits: train, test)" in err and "never on the test split" in err
    assert not (workdir / "best" / "temperature.json").exists()


def test_cli_each_evaluation_has_its_own_folder_and_the_index_lists_them(workdir, data_dir, tmp_path, capsys):
    root = tmp_path / "eval"
    base = ["--corpus", "demo-a", "--checkpoint", str(workdir), "--data-dir", str(data_dir), "--out", str(root),
            "--bootstrap", "0", "--json"]
    runs = {"demo-a-test-masked-emotion": [], "demo-a-test-card-emotion": ["--input", "card"],
            "demo-a-validation-masked-emotion": ["--split", "validation"]}
    docs = {}
    for name, extra in runs.items():
        assert evaluate.main(base + extra) == 0
        docs[name] = json.loads(capsys.readouterr().out)
    index = json.loads((root / "index.json").read_text())["runs"]
    assert [e["path"] for e in index] == list(runs)
    for e in index:
        folder = root / e["path"]
        stored = json.loads((folder / "results.json").read_text())
        assert (stored["split"], stored["input"], stored["label_space"]) == (e["split"], e["input"], e["labels"])
        assert e["corpora"] == ["demo-a"] and e["checkpoint"] == str(workdir / "best") and e["time"].endswith("Z")
        assert sorted(p.name for p in folder.iterdir()) == e["files"]
        assert {"results.md", "confusion_demo-a.png", "reliability_demo-a.png"} <= set(e["files"])
        assert e["mean_uar"] == pytest.approx(stored["results"][0]["uar"])
        assert list(e["means"]) == list(metrics.METRICS) and e["means"]["uar"] == e["mean_uar"]
    assert docs["demo-a-test-card-emotion"]["results"][0]["input"] == "card"
    md = (root / "index.md").read_text()
    assert all(f"[{name}/results.md]({name}/results.md)" in md for name in runs)
    assert not list(root.glob("*.partial")) and not (root / "results.md").exists()


def test_plot_class_names_name_native_labels_by_the_table():
    result = {"label_space": "native", "corpus": "emodb-emobox-fold1", "class_names": ["A", "L", "N", "W", "zz"]}
    assert ev.plot_class_names(result) == ["fear (A)", "boredom (L)", "neutral (N)", "anger (W)", "zz"]
    assert ev.plot_class_names({**result, "label_space": "emotion", "class_names": list(EMOTION_CLASSES)}) == \
        list(EMOTION_CLASSES)


def test_cli_comparison_with_out_has_its_own_folder_in_the_index(workdir, other_runs, data_dir, tmp_path, capsys):
    root = tmp_path / "cmp"
    argv = ["--corpus", "demo-a", "--checkpoint", f"{workdir},{other_runs / 'b'}", "--data-dir", str(data_dir),
            "--bootstrap", "0", "--out", str(root)]
    assert evaluate.main(argv) == 0
    folder = root / "demo-a-test-masked-emotion"
    assert "| **Average UAR over all datasets** |" in (folder / "comparison.md").read_text()
    assert json.loads((folder / "comparison.json").read_text())["columns"] == [str(workdir), str(other_runs / "b")]
    (entry,) = json.loads((root / "index.json").read_text())["runs"]
    assert entry["path"] == folder.name and entry["main"] == "comparison.md" and entry["mean_uar"] is None
    assert str(folder) in capsys.readouterr().err
