"""The model card's input protocol against the installed Wav2Vec2FeatureExtractor, and in evaluation."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from transformers import Wav2Vec2FeatureExtractor

from exhubert_jax.data.errors import DataError
from exhubert_jax.data.loading.batching import CorpusBatches
from exhubert_jax.data.loading.input_protocol import CardProtocol
from exhubert_jax.evaluation.predict import Predictor, predict_split
from exhubert_jax.model.config import preset
from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params

LENGTHS = (30000, 48000, 70000)  # shorter than, equal to and longer than the card's 3 s


def card_call(extractor: Wav2Vec2FeatureExtractor, clip: np.ndarray) -> np.ndarray:
    """Exactly the card's call: padding='max_length', max_length=48000, no truncation argument."""
    return extractor(clip, sampling_rate=16000, padding="max_length", max_length=48000,
                     return_tensors="np")["input_values"][0]


def clips(seed: int = 0) -> list[np.ndarray]:
    """Audio-like clips of the three lengths, with an offset so normalisation matters."""
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(n) + 0.05).astype(np.float32) for n in LENGTHS]


@pytest.mark.parametrize("return_mask", [False, True])
def test_card_protocol_equals_the_feature_extractor(return_mask):
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=return_mask)
    protocol = CardProtocol(return_attention_mask=return_mask)
    for clip in clips():
        theirs, ours = card_call(extractor, clip), protocol(clip)
        assert ours.shape == theirs.shape == (max(len(clip), 48000),)  # longer clips are never cropped
        assert np.max(np.abs(ours - theirs)) <= 1e-5


def test_protocol_from_a_preprocessor_config(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"do_normalize": False, "return_attention_mask": True, "sampling_rate": 16000,
                                "feature_size": 1, "padding_value": 0.0}))
    protocol = CardProtocol.from_file(path)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    clip = clips()[0]
    assert np.array_equal(protocol(clip), card_call(extractor, clip))
    path.write_text(json.dumps({"sampling_rate": 8000}))
    with pytest.raises(DataError, match="16 kHz mono"):
        CardProtocol.from_file(path)


def test_card_evaluation_equals_the_card_call_clip_by_clip():
    """Batched card evaluation (long clips padded to a bucket with a mask) equals feeding each card input alone,
    with no mask, as the card does."""
    jax.config.update("jax_default_matmul_precision", "highest")
    config = preset("tiny", layerdrop=0.0)
    params = init_params(config, 0)
    model = HubertForSequenceClassification(config)
    source = [dict(audio=c, label=i, native_index=i) for i, c in enumerate(clips(1))]
    got = predict_split(Predictor(model), params, source, batch_size=3, max_seconds=3.0, input_mode="card")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    for index, logits in zip(got.indices, got.logits):
        card = card_call(extractor, source[index]["audio"])[None]
        want = np.asarray(model.apply({"params": params}, card).logits)[0]
        assert np.max(np.abs(logits - want)) <= 1e-4


def test_card_training_batches_are_card_inputs():
    source = [dict(audio=c[:20000], label=0, native_index=0) for c in clips(2)]
    batch = next(CorpusBatches(source, 3, 3.0, seed=0, buckets=(48000,), card=CardProtocol()))
    assert batch.input_values.shape == (3, 48000) and batch.attention_mask.all()
    assert np.isclose(batch.n_seconds, 3 * 20000 / 16000)
    padded = np.zeros(48000, np.float32)
    padded[:20000] = source[0]["audio"]
    row = batch.indices.tolist().index(0)
    assert np.allclose(batch.input_values[row], (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7), atol=1e-5)


def test_evaluate_card_flags_are_never_silently_ignored(tmp_path, capsys):
    import evaluate

    path = tmp_path / "preprocessor_config.json"
    path.write_text("{not json")
    cases = [(["--corpus", "demo", "--card-config", str(path)], "--card-config applies to --input card only"),
             (["--corpus", "demo", "--input", "card", "--card-config", str(path)], "cannot read a preprocessor"),
             (["--audio", str(tmp_path), "--input", "card"], "--input card applies to prepared corpora")]
    for argv, message in cases:
        assert evaluate.main(argv + ["--checkpoint", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
