"""Evaluation: per-corpus metrics on prepared splits and prediction on audio files, through the one Predictor.

Prediction runs one jitted forward per padded batch shape (length buckets), so a whole evaluation compiles once per
bucket, never per batch or per file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from exhubert_jax.data.audio import (
    INFERENCE_EXTS,
    MIN_SAMPLES,
    SAMPLE_RATE,
    check_audio_file,
    input_files,
    load_audio,
)
from exhubert_jax.data.errors import AudioError
from exhubert_jax.data.loading.batching import bucket_length, default_buckets, normalize
from exhubert_jax.errors import ExhubertError
from exhubert_jax.evaluation import metrics
from exhubert_jax.evaluation.dimensional import (
    AROUSAL_HIGH,
    DIMENSIONS,
    VALENCE_BOUNDS,
    classes_from_dims,
    summarize_dims,
)
from exhubert_jax.evaluation.predict import Predictor, SplitPredictions, predict_split
from exhubert_jax.evaluation.soft_scores import soft_label_scores
from exhubert_jax.evaluation.split_caveats import class_counts, split_caveat
from exhubert_jax.model.config import EMOTION_CLASSES, LABEL_SPACES, HubertConfig

DEMO_CAVEAT = ("caveat: this model was trained only on the synthetic demo corpora (procedural sounds, not speech); "
               "its predictions on real audio mean nothing")
SILENT_WARNING = "silent clip (all samples zero): the prediction carries no information"


class EvaluationError(ExhubertError, ValueError):
    """An evaluation that cannot be run as asked (e.g. the model's head does not match the label space)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def model_class_names(config: HubertConfig) -> list[str]:
    """The head's class names: config.label_names, else the 6 emotion classes for a 6-way head (or a dimensional-only
    model, whose arousal and valence map onto them: dimensional.classes_from_dims), else indices."""
    if not config.num_labels:
        return list(EMOTION_CLASSES)
    if config.label_names is not None:
        return list(config.label_names)
    if config.num_labels == len(EMOTION_CLASSES):
        return list(EMOTION_CLASSES)
    return [f"LABEL_{i}" for i in range(config.num_labels)]


def auto_label_space(config: HubertConfig, native_labels: Sequence[str]) -> str:
    """'native' when the model's head is the corpus's native labels, else 'emotion' (always for a model without a
    classifier)."""
    if not config.num_labels:
        return "emotion"
    return "native" if model_class_names(config) == list(native_labels) else "emotion"


def check_label_space(config: HubertConfig, label_space: str, native_labels: Sequence[str] = (),
                      corpus: str = "") -> list[str]:
    """The class names to score against; EvaluationError when the model's head does not fit the label space."""
    if label_space not in LABEL_SPACES:
        raise EvaluationError(f"label space must be one of {LABEL_SPACES}, got {label_space!r}")
    head = model_class_names(config)
    if not config.num_labels and (label_space != "emotion" or not {"arousal", "valence"} <= set(config.dimensions)):
        raise EvaluationError(f"the model has no classifier, only the dimensions {', '.join(config.dimensions)}: "
                              "it is scored on the 6 emotion classes through arousal and valence (--labels emotion), "
                              "which needs both")
    if label_space == "emotion":
        if head != list(EMOTION_CLASSES):
            raise EvaluationError(
                f"the model's head has {config.num_labels} classes ({', '.join(head)}), not the 6 emotion classes "
                f"({', '.join(EMOTION_CLASSES)}); a head trained on a corpus's native labels needs --labels native")
        return head
    if head != list(native_labels):
        raise EvaluationError(
            f"the model's head classes ({', '.join(head)}) are not {corpus or 'the corpus'}'s native labels "
            f"({', '.join(native_labels)}); evaluate it on the corpus it was trained on, or use --labels emotion "
            "for a 6-class emotion head")
    return head


def plot_class_names(result: dict) -> list[str]:
    """A result's class names as its confusion matrix shows them: the 6 classes as they are; a corpus's native
    labels by their meaning in the label table, with the corpus's code where it differs ('anger (W)')."""
    if result["label_space"] != "native":
        return list(result["class_names"])
    from exhubert_jax.data.sources.corpora import base_name
    from exhubert_jax.data.sources.labels import load_label_table

    return load_label_table().display_names(base_name(result["corpus"]), result["class_names"])


# --------------------------------------------------------------------------------------------------------------
# Prepared corpora
# --------------------------------------------------------------------------------------------------------------


def evaluate_corpus(model, params, corpus, split: str = "test", batch_size: int = 8,
                    data_dir: str | Path | None = None, label_space: str = "emotion",
                    predictor: Predictor | None = None, max_seconds: float | None = None,
                    input_mode: str = "masked", card: Any = None, progress: bool = False) -> dict:
    """Metrics of `model` on one prepared split, with per-utterance split index, file, speaker, gender and language
    (None when unknown), label, prediction and logits. `card`: the data.card.CardProtocol of input_mode 'card'
    (default: the card's); `progress`: show the utterances done on stderr. Where the split has label distributions,
    'soft_labels' scores the model's probabilities against them (soft_scores); utterances without a hard label (kept
    for their distribution alone) count there only."""
    from exhubert_jax.data.loading import dataset

    prepared = dataset.open_prepared(corpus, data_dir) if isinstance(corpus, (str, Path)) else corpus
    name = prepared.name
    check_label_space(model.config, label_space, list(prepared.native_labels), name)  # before any prediction
    source = prepared.split(split)
    p = predict_split(predictor or Predictor(model), params, source, batch_size=batch_size,
                      max_seconds=max_seconds, label_space=label_space, input_mode=input_mode, corpus=name,
                      card=card, progress=progress)
    return score_predictions(model, prepared, split, label_space, input_mode, p)


def score_predictions(model, prepared, split: str, label_space: str, input_mode: str, p: SplitPredictions) -> dict:
    """evaluate_corpus's result from the predictions of one prepared split (predict_split's, or those of another
    forward over the same utterances: evaluation.robustness)."""
    names = check_label_space(model.config, label_space, list(prepared.native_labels), prepared.name)
    name, source = prepared.name, prepared.split(split)
    dists = source.dists if label_space == "emotion" else source.native_dists
    soft = soft_label_scores(p.logits, dists[p.indices]) if dists is not None and model.config.num_labels else None
    p = with_hard_labels(p)
    y_pred = predicted_classes(model.config, p.logits, p.values)
    result = {"corpus": name, "split": split, "label_space": label_space, "input": input_mode,
              "audio_seconds": p.seconds, **metrics.summarize(p.targets, y_pred, len(names), names),
              "caveat": split_caveat(class_counts(p.targets, names))}
    if not model.config.num_labels:
        result["classes_from"] = CLASSES_FROM_DIMS
    fields = source.utterance_fields()
    genders, languages = source.genders, source.languages  # None: not recorded (genders: prepared before they were)
    result["utterances"] = [{"index": int(i), "file": fields[i]["path"], "speaker": fields[i]["speaker"],
                             "gender": None if genders is None else genders[i],
                             "language": None if languages is None else languages[i],
                             "label": int(t), "pred": int(q), "logits": [float(v) for v in lg]}
                            for i, t, q, lg in zip(p.indices, p.targets, y_pred, p.logits)]
    if genders is None:  # what prepares it again, recording them (evaluation.groups warns with it)
        result["prepared_without_genders"] = prepared.command
    if model.config.dimensions:
        targets = p.dims[:, [DIMENSIONS.index(d) for d in model.config.dimensions]]
        result["dimensional"] = summarize_dims(targets, p.values, model.config.dimensions)
        for u, v, t in zip(result["utterances"], p.values, targets):
            u.update(values=[float(x) for x in v], dims=[float(x) if np.isfinite(x) else None for x in t])
    if soft:
        result["soft_labels"] = soft
    return result


def with_hard_labels(p: SplitPredictions) -> SplitPredictions:
    """The predictions of the utterances with a hard label: one kept for its label distribution alone (label -1,
    prepare --keep-no-majority) is never scored on hard labels."""
    keep = p.targets >= 0
    if keep.all():
        return p
    return p._replace(indices=p.indices[keep], targets=p.targets[keep], logits=p.logits[keep],
                      **{k: getattr(p, k)[keep] for k in ("values", "dims") if getattr(p, k) is not None})


CLASSES_FROM_DIMS = (f"arousal >= {AROUSAL_HIGH} is high; valence < {VALENCE_BOUNDS[0]:.3f} negative, >= "
                     f"{VALENCE_BOUNDS[1]:.3f} positive, neutral between (exhubert_jax.evaluation.dimensional)")


def predicted_classes(config: HubertConfig, logits: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """The classifier's argmax, or for a dimensional-only model the class of its arousal and valence."""
    if config.num_labels:
        return logits.argmax(axis=-1)
    dims = list(config.dimensions)
    return classes_from_dims(values[:, dims.index("arousal")], values[:, dims.index("valence")])


# --------------------------------------------------------------------------------------------------------------
# Audio files
# --------------------------------------------------------------------------------------------------------------


def check_audio_path(path: str | Path) -> list[Path]:
    """input_files of --audio PATH, checked before any model loads; EvaluationError when the path does not exist or
    holds no audio file, AudioError when it is one file that check_audio_file refuses (empty, truncated: a folder's
    bad files are reported one by one as they are read)."""
    if not Path(path).exists():
        raise EvaluationError(f"--audio {path} does not exist")
    files = input_files(path)
    if not files:
        raise EvaluationError(f"no audio files ({', '.join(sorted(INFERENCE_EXTS))}) in {path}")
    if not Path(path).is_dir():
        check_audio_file(path)
    return files


def chunk_length(chunk_seconds: float, error: type[Exception]) -> int:
    """Samples in a chunk of `chunk_seconds`; raises `error` when that is shorter than one HuBERT frame."""
    samples = int(round(chunk_seconds * SAMPLE_RATE))
    if samples < MIN_SAMPLES:
        raise error(f"chunk_seconds={chunk_seconds} is shorter than one HuBERT frame ({MIN_SAMPLES} samples)")
    return samples


def chunk_audio(audio: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """Split into ceil(len/chunk_samples) near-equal consecutive chunks, each at most chunk_samples long."""
    n = max(1, math.ceil(len(audio) / chunk_samples))
    return np.array_split(audio, n)


def predict_audio(model, params, path_or_dir: str | Path, chunk_seconds: float = 3.0, batch_size: int = 8,
                  predictor: Predictor | None = None, temperature: float = 1.0, progress: bool = False) -> list[dict]:
    """6-class (or head-class) probabilities for audio files; a bad file yields {'file', 'error'} and the rest run.

    Each file is decoded at any sample rate to 16 kHz mono and split into near-equal chunks of at most
    `chunk_seconds` (the model card feeds 3 s). Chunks of all files are sorted by length, normalised like
    Wav2Vec2FeatureExtractor(do_normalize) and padded (with their masks) to the smallest of three bucket lengths,
    so a folder compiles at most three shapes and short clips are not padded to full length. A file's logits are
    its chunk logits averaged with weights proportional to chunk length; probabilities are softmax(logits /
    temperature), the temperature being 1 unless one was fitted on validation data (evaluate.py --calibrate). A
    model with dimensions adds {'dimensions': {name: value}} (averaged alike); a dimensional-only model's 'top' is
    the class of its arousal and valence. `progress`: show the chunks predicted on stderr.
    """
    from exhubert_jax.process.progress import progress as display

    names = model_class_names(model.config)
    chunk_samples = chunk_length(chunk_seconds, EvaluationError)
    if batch_size < 1:
        raise EvaluationError(f"batch size must be positive, got {batch_size}")
    predict = predictor or Predictor(model)
    files = input_files(path_or_dir)
    results: list[dict] = [{"file": str(f)} for f in files]
    chunks: list[tuple[int, np.ndarray]] = []
    for i, f in enumerate(files):
        try:
            audio = load_audio(f, SAMPLE_RATE)
        except AudioError as e:
            results[i]["error"] = e.reason
            continue
        except OSError as e:
            results[i]["error"] = f"unreadable ({e})"
            continue
        results[i].update(duration=len(audio) / SAMPLE_RATE, chunks=0)
        if not np.any(audio):
            results[i]["warning"] = SILENT_WARNING
        for piece in chunk_audio(audio, chunk_samples):
            results[i]["chunks"] += 1
            chunks.append((i, piece))
    config = model.config
    sums = np.zeros((len(files), config.num_labels + len(config.dimensions)))
    lengths = np.zeros(len(files))
    bar = display(len(chunks), "predict audio", "chunk", quiet=not progress)
    for owners, x, mask in _length_batches(chunks, batch_size, default_buckets(chunk_seconds)):
        out = predict.outputs(params, x, mask)
        for row, owner in enumerate(owners):
            n = mask[row].sum()
            sums[owner] += n * out[row]
            lengths[owner] += n
        bar.update(len(owners))
    bar.close()
    for i, res in enumerate(results):
        if "error" in res:
            continue
        mean = sums[i] / lengths[i]
        logits, values = mean[:config.num_labels], mean[config.num_labels:]
        if config.dimensions:
            res["dimensions"] = {d: float(v) for d, v in zip(config.dimensions, values)}
        if config.num_labels:
            probs = softmax(logits / temperature)
            res.update(logits=[float(v) for v in logits], top=names[int(probs.argmax())],
                       probabilities={n: float(p) for n, p in zip(names, probs)})
        else:  # the class its arousal and valence fall in (CLASSES_FROM_DIMS)
            res["top"] = names[int(predicted_classes(config, logits[None], values[None])[0])]
    return results


def _length_batches(chunks: list[tuple[int, np.ndarray]], batch_size: int, buckets: Sequence[int]):
    """(owners, x, mask) batches of chunks in length order, each padded to the smallest bucket that fits its longest
    chunk; rows past the last chunk are padding with a full mask (keeps the pooled mean finite; outputs ignored)."""
    ordered = sorted(chunks, key=lambda item: len(item[1]))
    for start in range(0, len(ordered), batch_size):
        group = ordered[start:start + batch_size]
        width = bucket_length(max(len(c) for _, c in group), buckets)
        x = np.zeros((batch_size, width), np.float32)
        mask = np.zeros((batch_size, width), np.int32)
        mask[len(group):] = 1
        for row, (_, chunk) in enumerate(group):
            x[row, :len(chunk)] = normalize(chunk)
            mask[row, :len(chunk)] = 1
        yield [owner for owner, _ in group], x, mask


# --------------------------------------------------------------------------------------------------------------
# What to evaluate: checkpoints and corpus names
# --------------------------------------------------------------------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A save_pretrained directory as given, a training workdir's best/ (falling back to final/), or a Hub id's
    checkpoint (converted and cached on first use)."""
    from exhubert_jax.hub.repos import resolve_checkpoint as resolve

    try:
        return resolve(path)[0]
    except FileNotFoundError as e:
        raise EvaluationError(f"{e}; train one with `python train.py --stage finetune` or pass --checkpoint DIR") from e


def checkpoint_caveat(checkpoint: str | Path) -> str | None:
    """DEMO_CAVEAT when the run that wrote this checkpoint trained on the synthetic demo corpora only; a caveat of its
    own when that run's run.json is there but damaged (whether it was demo-only cannot be told); else None."""
    from exhubert_jax.data.loading.resolve import group_of
    from exhubert_jax.process.run_folders import RUN_JSON, read_run

    record = read_run(Path(checkpoint).parent)
    if not record and (Path(checkpoint).parent / RUN_JSON).is_file():
        return (f"caveat: {Path(checkpoint).parent / RUN_JSON} is damaged, so whether this model was trained only on "
                "the synthetic demo corpora cannot be told")
    corpora = record.get("corpora", {})
    return DEMO_CAVEAT if corpora and all(group_of(n) == "demo" for n in corpora) else None


def per_corpus_run(spec: str | Path, corpus: str) -> Path:
    """A workdir's transfer run for this corpus (SPEC/transfer-CORPUS) when there is one, else SPEC itself."""
    transfer = Path(spec) / f"transfer-{corpus}"
    return transfer if transfer.is_dir() else Path(spec)


def trainable_parameters(checkpoint: str | Path, model, params) -> int:
    """Trainable parameters of the run that wrote the checkpoint (its run.json), else of the model under the
    default freezing rule (CNN frozen; originals frozen in an expanded model)."""
    from exhubert_jax.model.param_labels import count, param_labels
    from exhubert_jax.process.run_folders import read_run

    recorded = read_run(Path(checkpoint).parent).get("trainable_params")
    return int(recorded) if recorded is not None else count(params, param_labels(params, model.config))
