"""File inference: `evaluate.py --audio DIR`'s path (decode, chunk, length-bucketed batches, one jitted forward) against
transformers' pipeline("audio-classification") on the same model exported to PyTorch, over the same files decoded
the same way. One process; one JSON line with audio-seconds per second, compiles and the agreement of the two.

Usage: python bench/infer.py [--preset base] [--files 200] [--min-seconds 0.5] [--max-seconds 12] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from exhubert_jax.data.audio import SAMPLE_RATE  # noqa: E402


def make_files(root: Path, n: int, lo: float, hi: float, seed: int = 0) -> list[Path]:
    """n WAV files of uniformly drawn lengths in [lo, hi] seconds (voiced tones in noise, 16 kHz)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        t = np.arange(int(rng.uniform(lo, hi) * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(90, 300)
        wave = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) + 0.05 * rng.standard_normal(t.size)
        paths.append(root / f"clip{i:03d}.wav")
        sf.write(paths[-1], wave.astype(np.float32), SAMPLE_RATE)
    return paths


def _arguments(argv) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    ap.add_argument("--preset", default="base")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--max-seconds", type=float, default=12.0)
    ap.add_argument("--batch", type=int, default=8)
    return ap.parse_args(argv)


def time_ours(model, params, clips: Path, batch: int) -> tuple[list, float, float, list]:
    """`evaluate.py --audio`'s path over the folder twice: (predictions, cold seconds, warm seconds, compiled
    shapes)."""
    from exhubert_jax.evaluation.predict import Predictor
    from exhubert_jax.evaluation.scoring import predict_audio

    predictor = Predictor(model)
    start = time.perf_counter()
    ours = predict_audio(model, params, clips, chunk_seconds=3.0, batch_size=batch, predictor=predictor)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    predict_audio(model, params, clips, chunk_seconds=3.0, batch_size=batch, predictor=predictor)
    return ours, cold_s, time.perf_counter() - start, sorted(set(predictor.compiled_shapes))


def time_pipeline(exported: Path, files: list[Path], batch: int) -> tuple[list, float]:
    """transformers' audio-classification pipeline over the same decoded files: (predictions, seconds)."""
    from transformers import Wav2Vec2FeatureExtractor, pipeline

    from exhubert_jax.data.audio import load_audio

    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    classify = pipeline("audio-classification", model=str(exported), feature_extractor=extractor,
                        device="cpu", top_k=None)
    start = time.perf_counter()
    inputs = [{"raw": load_audio(f), "sampling_rate": SAMPLE_RATE} for f in files]
    theirs = classify(inputs, batch_size=batch)
    return theirs, time.perf_counter() - start


def single_chunk_gap(lengths: list[int], ours: list, theirs: list) -> tuple[int, float]:
    """(files of at most one chunk, the largest probability difference on them): those go through the same
    computation both ways (longer ones: our chunk average vs the pipeline's whole-file pass), so they must agree."""
    single = [i for i, n in enumerate(lengths) if n <= 48000]
    gap = max((abs(ours[i]["probabilities"][d["label"]] - d["score"]) for i in single for d in theirs[i]), default=0.0)
    return len(single), gap


def main(argv=None) -> dict:
    """Time both paths on the same files; print and return the JSON result."""
    args = _arguments(argv)

    import torch

    from bench.common import hf_and_flax, machine
    from converters.flax_to_torch import export
    from exhubert_jax import HubertForSequenceClassification
    from exhubert_jax.data.audio import load_audio
    from exhubert_jax.model.config import EMOTION_CLASSES

    torch_model, config, params = hf_and_flax(args.preset)
    config = config.replace(label_names=EMOTION_CLASSES)
    model = HubertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        files = make_files(tmp / "clips", args.files, args.min_seconds, args.max_seconds)
        lengths = [len(load_audio(f)) for f in files]
        audio_seconds = sum(lengths) / SAMPLE_RATE
        exported = export(params, config, tmp / "exported")
        ours, ours_s, ours_warm_s, shapes = time_ours(model, params, tmp / "clips", args.batch)
        theirs, theirs_s = time_pipeline(exported, files, args.batch)
    n_single, gap = single_chunk_gap(lengths, ours, theirs)
    result = {"bench": "infer", "preset": args.preset, "files": len(files), "audio_seconds": round(audio_seconds, 1),
              "batch": args.batch, "ours": {"seconds": ours_s, "audio_s_per_s": audio_seconds / ours_s,
                                            "warm_seconds": ours_warm_s,
                                            "warm_audio_s_per_s": audio_seconds / ours_warm_s,
                                            "compiled_shapes": shapes},
              "pipeline": {"seconds": theirs_s, "audio_s_per_s": audio_seconds / theirs_s},
              "speedup_cold": theirs_s / ours_s, "speedup_warm": theirs_s / ours_warm_s,
              "single_chunk_files": n_single, "single_chunk_max_prob_diff": gap,
              "loadavg": os.getloadavg(), "torch_threads": torch.get_num_threads(), **machine()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
