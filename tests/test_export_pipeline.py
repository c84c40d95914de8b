"""Exports carry the feature extractor of their input protocol: transformers' audio-classification pipeline on an
export gives our probabilities."""

import json

import numpy as np
import pytest
from transformers import AutoFeatureExtractor, pipeline

from converters import flax_to_torch
from exhubert_jax import init_params, preset, save_pretrained
from exhubert_jax.data.loading.batching import normalize
from exhubert_jax.data.loading.input_protocol import DEFAULT, feature_extractor_config
from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation.predict import Predictor
from exhubert_jax.evaluation.scoring import softmax
from exhubert_jax.training.run_record import RUN_JSON

LABELS = ("calm", "tense", "glad", "sad", "bored", "angry")


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced-sounding clip at 16 kHz, not zero-mean, so normalisation matters."""
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    return (0.2 + 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A training-workdir-shaped folder (run.json says it trained masked) with a tiny random model in best/."""
    root = tmp_path_factory.mktemp("run")
    config = preset("tiny", label_names=LABELS, layerdrop=0.0)
    save_pretrained(root / "best", config, init_params(config, 3))
    (root / RUN_JSON).write_text(json.dumps({"options": {"input_mode": "masked"}}))
    return root


@pytest.mark.parametrize("style", ["plain", pytest.param("zll", marks=pytest.mark.slow)])
def test_pipeline_scores_are_our_softmax(run, tmp_path, style):
    from exhubert_jax import from_pretrained
    from exhubert_jax.model.expansion import expand

    model, params = from_pretrained(run / "best")
    src = run / "best"
    if style == "zll":
        params, config, _ = expand(params, model.config, copies=1, style="zll")
        src = tmp_path / "zll" / "best"
        save_pretrained(src, config, params)
        model, params = from_pretrained(src)
    out = tmp_path / "export"
    assert flax_to_torch.main([str(src), str(out)]) == 0
    assert json.loads((out / "preprocessor_config.json").read_text()) == feature_extractor_config("masked")
    wave = clip(1.3)
    ours = softmax(Predictor(model)(params, normalize(wave)[None], np.ones((1, wave.size), np.int32)))[0]
    classify = pipeline("audio-classification", model=str(out), trust_remote_code=style == "zll")
    scores = {s["label"]: s["score"] for s in classify({"raw": wave, "sampling_rate": 16000}, top_k=None)}
    assert sorted(scores) == sorted(LABELS)
    np.testing.assert_allclose([scores[n] for n in LABELS], ours, atol=1e-5)


def test_card_export_feeds_as_the_card_extractor(run, tmp_path, capsys):
    assert flax_to_torch.main([str(run), str(tmp_path / "card"), "--input", "card"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "card"
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "card")
    wave = clip(3.0, seed=1)
    features = extractor(wave, sampling_rate=16000, padding="max_length", max_length=DEFAULT.max_length)
    assert "attention_mask" not in features
    np.testing.assert_allclose(features["input_values"][0], DEFAULT(wave), atol=1e-6)


def test_input_protocol_comes_from_run_json(run, tmp_path, capsys):
    card_run = tmp_path / "card-run"
    (card_run / "best").parent.mkdir()
    import shutil
    shutil.copytree(run / "best", card_run / "best")
    (card_run / RUN_JSON).write_text(json.dumps({"options": {"input_mode": "card"}}))
    assert flax_to_torch.main([str(card_run), str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "card"
    written = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert written["return_attention_mask"] is False and written["do_normalize"] is True
    with pytest.raises(ExhubertError, match="input protocol must be one of masked, card"):
        feature_extractor_config("cropped")
