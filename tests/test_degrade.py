"""evaluate.py --degrade: each condition does what it says, draws that do not depend on the batch, the paired test
against clean, the command's outputs and its errors; on a tiny random model and the synthetic demo corpora."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evaluate
from exhubert_jax.data import codecs
from exhubert_jax.data.loading.batching import normalize
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.evaluation import degradation as dg
from exhubert_jax.evaluation import robustness
from tests.test_evaluation import data_dir, model_params, workdir  # noqa: F401 (the same module fixtures)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SR = 16000


@pytest.fixture(scope="module")
def predictor(model_params):
    return dg.DegradedPredictor(model_params[0])


def speech_like(n: int, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test signal: harmonics of 150 Hz under a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    voiced = sum(np.sin(2 * np.pi * 150 * k * t + rng.uniform(0, 6)) / k for k in range(1, 20))
    return (0.2 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def padded_batch(lengths=(16000, 9000, 4000), width=16000):
    """(x, mask, keys) of normalised speech-like rows with zero padding."""
    x = np.zeros((len(lengths), width), np.float32)
    mask = np.zeros((len(lengths), width), np.int32)
    for row, n in enumerate(lengths):
        x[row, :n], mask[row, :n] = normalize(speech_like(n, row)), 1
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(0), jnp.arange(len(lengths), dtype=jnp.uint32))
    return jnp.asarray(x), jnp.asarray(mask), keys


def corrupted(spec: str, x, mask, keys):
    """dg.corrupt of a batch under a spec (before the renormalisation)."""
    c = dg.parse_condition(spec)
    s = {k: jnp.asarray(v) for k, v in dg.strengths(c).items()}
    return np.asarray(dg.corrupt(c.kind, x, mask, keys, s, None, x.shape[1]))


# ------------------------------------------------------------------------------------------------- conditions


@pytest.mark.parametrize("snr", [0.0, 20.0, -5.0])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_is_at_the_spec_snr_over_valid_samples_and_padding_stays_zero(snr, colour):
    x, mask, keys = padded_batch()
    y = corrupted(f"noise:snr={snr},colour={colour}", x, mask, keys)
    m = np.asarray(mask).astype(bool)
    for row in range(len(y)):
        signal, noise = np.asarray(x)[row, m[row]], y[row, m[row]] - np.asarray(x)[row, m[row]]
        measured = 10 * np.log10(np.mean(signal ** 2) / np.mean(noise ** 2))
        assert abs(measured - snr) < 0.1
    assert not y[~m].any()


def test_degraded_rows_are_normalised_over_valid_samples_only():
    x, mask, keys = padded_batch()
    c = dg.parse_condition("reverb:rt60=0.8")
    y = np.asarray(dg.degrade(c.kind, x, mask, keys, {k: jnp.asarray(v) for k, v in dg.strengths(c).items()}, None,
                              x.shape[1]))
    m = np.asarray(mask).astype(bool)
    for row in range(len(y)):
        assert abs(y[row, m[row]].mean()) < 1e-4 and abs(y[row, m[row]].std() - 1) < 1e-3
    assert not y[~m].any()


def test_reverb_spreads_energy_into_a_tail_and_clip_caps_the_level():
    x, mask, keys = padded_batch()
    wet = corrupted("reverb:rt60=0.8", x, mask, keys)
    m = np.asarray(mask).astype(bool)
    assert not wet[~m].any() and not np.allclose(wet[m], np.asarray(x)[m], atol=1e-2)
    clipped = corrupted("clip:db=-12", x, mask, keys)
    for row in range(len(x)):
        peak = np.abs(np.asarray(x)[row, m[row]]).max()
        assert np.abs(clipped[row]).max() <= peak * 10 ** (-12 / 20) * (1 + 1e-6)
        assert np.isclose(np.abs(clipped[row]).max(), peak * 10 ** (-12 / 20), rtol=1e-5)
    assert not clipped[~m].any()


def tone(freq: float, n: int = SR) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def test_telephone_removes_5_khz_and_keeps_1_khz():
    def gain_db(freq):
        x = tone(freq)
        y = codecs.telephone(x)
        assert len(y) == len(x)
        inner = slice(2000, -2000)  # away from the edges' transients
        return 10 * np.log10(np.mean(y[inner] ** 2) / np.mean(x[inner] ** 2))

    assert abs(gain_db(1000)) < 1.0
    assert gain_db(5000) < -40


@pytest.mark.parametrize("spec", ["codec:name=mp3", "codec:name=mp3,kbps=128", "codec:name=opus",
                                  "codec:name=vorbis", "codec:name=gsm"])
def test_codec_round_trip_changes_the_signal_but_keeps_length_and_alignment(spec):
    c = dg.parse_condition(spec)
    x = speech_like(25000, 3)
    y = codecs.codec_round_trip(x, c.options["name"], c.options.get("kbps"), c.options.get("quality"))
    assert len(y) == len(x) and not np.allclose(y, x, atol=1e-4)
    lags = range(-48, 49)  # 3 ms either way
    corr = [np.dot(np.roll(y, -lag)[2000:-2000], x[2000:-2000]) for lag in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 16  # aligned within 1 ms
    rows = codecs.degrade_rows(np.stack([np.pad(x, (0, 5000)), np.zeros(30000, np.float32)]),
                               np.array([25000, 0]), c.kind, c.options)
    assert not rows[0, 25000:].any() and not rows[1].any() and abs(rows[0, :25000].std() - 1) < 1e-3


# ------------------------------------------------------------------------------------------------------- specs


def test_specs_parse_to_canonical_conditions_with_clean_first():
    got = dg.conditions(["noise:snr=0", "codec:name=opus,kbps=24", "telephone", "clip", "noise:snr=0,colour=white"])
    assert [c.spec for c in got] == ["clean", "noise:snr=0,colour=white", "codec:name=opus,kbps=24", "telephone",
                                     "clip:db=-6"]
    assert dg.parse_condition("codec:name=mp3").options["kbps"] == 32 and got[2].host and not got[1].host


@pytest.mark.parametrize("spec, message", [
    ("echo", "--degrade echo: unknown kind 'echo'; choose one of clean, noise, reverb, codec, telephone, clip"),
    ("codec:name=aac", "--degrade codec:name=aac: name must be one of mp3, opus, vorbis, gsm, got 'aac'"),
    ("codec:name=gsm,kbps=8", "--degrade codec:name=gsm,kbps=8: gsm takes no kbps (it has a fixed bitrate)"),
    ("codec:name=mp3,kbps=33", "mp3 kbps must be one of 16, 24, 32"),
    ("noise:snr=loud", "--degrade noise:snr=loud: snr must be a number, got 'loud'"),
    ("reverb:rt60=9", "rt60 must be a positive number from 0 to 3, got '9'"),
    ("clip:db=3", "db must be a number from -60 to 0, got '3'"),
    ("telephone:band=wide", "telephone has no option(s) band (options: none)"),
])
def test_bad_specs_are_one_error_line_naming_the_flag_exit_2(spec, message, capsys):
    assert evaluate.main(["--corpus", "demo", "--degrade", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("extra, message", [
    (["--audio", "{noise}"], "it cannot run with --audio"),
    (["--calibrate"], "it cannot run with --calibrate"),
    (["--checkpoint", "{run},{run}/best"], "it cannot run with several --checkpoint runs"),
    (["--noise-dir", "{noise}"], "--noise-dir {noise} does nothing without --degrade noise"),
])
def test_degrade_refuses_what_it_cannot_run_before_any_model_loads(extra, message, workdir, data_dir, tmp_path,
                                                                   monkeypatch, capsys):
    import soundfile as sf

    import exhubert_jax.pretrained

    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", tone(50), SR)
    monkeypatch.setattr(exhubert_jax.pretrained, "from_pretrained", lambda *a, **k: pytest.fail("a model loaded"))
    fill = {"tmp": tmp_path, "run": workdir, "noise": tmp_path / "noise"}
    argv = ["--checkpoint", str(workdir), "--data-dir", str(data_dir), "--degrade", "reverb"]
    argv += [] if "--audio" in extra else ["--corpus", "demo-a"]
    assert evaluate.main(argv + [a.format(**fill) for a in extra]) == 2
    err = capsys.readouterr().err
    assert message.format(**fill) in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ scoring


DEVICE_CONDITIONS = ("noise:snr=5", "reverb:rt60=0.8")


def scored(model_params, predictor, data_dir, batch_size, specs=DEVICE_CONDITIONS, pool=None):
    model, params = model_params
    return robustness.score_conditions(model, params, open_prepared("demo-b", data_dir), "test",
                                       dg.conditions(specs), batch_size=batch_size, label_space="emotion",
                                       predictor=predictor, seed=3, n_resamples=50, pool=pool)


@pytest.mark.parametrize("spec", ["noise:snr=5", "noise:snr=5,colour=pink", "reverb:rt60=0.8"])
def test_an_utterances_draws_do_not_depend_on_its_batch(spec):
    """The same utterance (split index 7) alone in a wide batch and beside another in a narrow one: the same
    degraded samples."""
    c = dg.parse_condition(spec)
    s = {k: jnp.asarray(v) for k, v in dg.strengths(c).items()}
    key = jnp.asarray(dg.condition_key(0, "demo-x", c))
    utterance = normalize(speech_like(9000, 1))
    outputs = []
    for rows, width in (((utterance,), 32000), ((speech_like(16000, 2), utterance), 16000)):
        x = np.zeros((len(rows), width), np.float32)
        mask = np.zeros_like(x, np.int32)
        for row, a in enumerate(rows):
            x[row, :len(a)], mask[row, :len(a)] = a, 1
        indices = jnp.asarray([7] if len(rows) == 1 else [3, 7])
        y = dg.corrupt(c.kind, jnp.asarray(x), jnp.asarray(mask), dg.row_keys(key, indices), s, None, 48000)
        outputs.append(np.asarray(y)[-1, :9000])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)


@pytest.mark.slow
def test_draws_are_deterministic_and_do_not_depend_on_the_batch(model_params, predictor, data_dir):
    first = scored(model_params, predictor, data_dir, 8)
    again = scored(model_params, predictor, data_dir, 8)
    small = scored(model_params, predictor, data_dir, 4)  # other batches, other padded widths
    for a, b, c in zip(first, again, small):
        assert a["condition"] == b["condition"] == c["condition"]
        assert robustness.summary(a) == robustness.summary(b)  # bit for bit
        la = np.asarray([u["logits"] for u in sorted(a["utterances"], key=lambda u: u["index"])])
        lc = np.asarray([u["logits"] for u in sorted(c["utterances"], key=lambda u: u["index"])])
        np.testing.assert_allclose(la, lc, atol=2e-4)
    clean = np.asarray([u["logits"] for u in first[0]["utterances"]])
    assert all(not np.allclose(np.asarray([u["logits"] for u in r["utterances"]]), clean, atol=1e-5)
               for r in first[1:])
    kinds = {kind for kind, _ in predictor.compiled}
    assert kinds == {"none", "noise", "reverb"}
    assert len(predictor.compiled) == len(set(predictor.compiled))  # one program per kind and shape, never per SNR


def test_paired_test_against_clean_on_the_same_utterances(model_params, predictor, data_dir):
    results = scored(model_params, predictor, data_dir, 8)
    clean = results[0]["paired"]
    assert results[0]["condition"] == "clean" and clean["diff"] == 0 and clean["interval"] == [0.0, 0.0]
    for r in results[1:]:
        e = r["paired"]
        assert e["condition"] == r["condition"] and e["resamples"] == 50 and "p_holm" in e
        assert e["diff"] == pytest.approx(r["uar"] - results[0]["uar"])
        assert set(e["metrics"]) >= {"uar", "wa"} and r["intervals"]["uar"]
    assert len(predictor.compiled) == len(set(predictor.compiled))  # one program per kind and shape, never per SNR


# ---------------------------------------------------------------------------------------------------- command


DONE_WHEN = ["--bootstrap", "100", "--degrade", "noise:snr=0", "--degrade", "noise:snr=20", "--degrade",
             "reverb:rt60=0.8", "--degrade", "codec:name=mp3", "--json", "--quiet"]


def run_json(workdir, data_dir, out, capsys, *extra) -> dict:
    """evaluate.py --corpus demo-a with the issue's --degrade conditions, --json: its document."""
    argv = ["--corpus", "demo-a", "--checkpoint", str(workdir), "--data-dir", str(data_dir), "--out", str(out)]
    assert evaluate.main(argv + DONE_WHEN + list(extra)) == 0
    return json.loads(capsys.readouterr().out)  # stdout is exactly one JSON document


def test_done_when_command_json_table_and_plot(workdir, data_dir, tmp_path, capsys):
    doc = run_json(workdir, data_dir, tmp_path / "a", capsys)
    entries = doc["corpora"]["demo-a"]
    assert [e["condition"] for e in entries] == ["clean", "noise:snr=0,colour=white", "noise:snr=20,colour=white",
                                                 "reverb:rt60=0.8,drr=0", "codec:name=mp3,kbps=32"]
    for e in entries:
        assert 0 <= e["uar"] <= 1 and len(e["intervals"]["uar"]) == 2 and "p_holm" in e["paired"]
    assert entries[0]["paired"]["diff"] == 0
    out = tmp_path / "a" / "demo-a-test-masked-emotion-robustness"
    assert doc["out"] == str(out) and (out / "robustness_demo-a.png").read_bytes()[:8] == PNG_MAGIC
    assert "| codec:name=mp3,kbps=32 | 6 |" in (out / "robustness.md").read_text()
    assert json.loads((out / "robustness.json").read_text())["corpora"] == doc["corpora"]
    assert "robustness.md" in (tmp_path / "a" / "index.md").read_text()


@pytest.mark.slow
def test_same_command_twice_same_numbers_through_the_worker_pool(workdir, data_dir, tmp_path, capsys):
    first = run_json(workdir, data_dir, tmp_path / "a", capsys, "--batch-size", "2")  # 3 batches: the pool runs
    again = run_json(workdir, data_dir, tmp_path / "b", capsys, "--batch-size", "2")
    assert first["corpora"] == again["corpora"]
    whole = run_json(workdir, data_dir, tmp_path / "c", capsys)
    for a, b in zip(first["corpora"]["demo-a"], whole["corpora"]["demo-a"]):
        assert a["condition"] == b["condition"] and a["uar"] == b["uar"]


def test_noise_dir_and_rir_dir_recordings(model_params, predictor, data_dir, tmp_path):
    import soundfile as sf

    for name in ("noise", "rirs"):
        (tmp_path / name).mkdir()
    sf.write(tmp_path / "noise" / "babble.wav", speech_like(3 * SR, 9), SR)
    decay = np.random.default_rng(0).standard_normal(4000) * np.exp(-np.arange(4000) / 800)
    sf.write(tmp_path / "rirs" / "room.wav", (0.5 * decay).astype(np.float32), SR)
    banks = robustness.load_banks(str(tmp_path / "noise"), str(tmp_path / "rirs"), 0)
    model, params = model_params
    results = robustness.score_conditions(model, params, open_prepared("demo-c", data_dir), "test",
                                          dg.conditions(["noise:snr=0", "reverb"], "x", "y"), batch_size=8,
                                          label_space="emotion", predictor=predictor, seed=0, n_resamples=0,
                                          banks=banks)
    assert [r["condition"] for r in results] == ["clean", "noise:snr=0,colour=white", "reverb:rt60=0.5,drr=0"]
    assert all(r["n"] == 6 and "paired" not in r for r in results)
