"""Evaluation: per-corpus metrics on prepared splits, direct prediction on audio files, tables and plots.

Prediction runs one jitted forward per padded batch shape (the data package's length buckets; a single fixed
chunk shape for ``predict_audio``), so a whole evaluation compiles once per bucket, never per batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import jax
import numpy as np

from . import metrics
from .config import EMOTION_CLASSES, HubertConfig
from .data.audio import load_audio
from .data.batching import normalize
from .data.errors import AudioError
from .errors import ExhubertError

SAMPLE_RATE = 16000
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif", ".au")
LABEL_SPACES = ("emotion", "native")


class EvaluationError(ExhubertError, ValueError):
    """An evaluation that cannot be run as asked (e.g. the model's head does not match the label space)."""


# --------------------------------------------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------------------------------------------


class PredictFn:
    """Jitted `(params, input_values, attention_mask) -> logits` (numpy); records each shape it compiles for."""

    def __init__(self, model):
        self.model = model
        self.compiled_shapes: list[tuple[int, ...]] = []
        self._jitted = jax.jit(self._forward)

    def _forward(self, params, input_values, attention_mask):
        """Traced once per input shape: the list below grows only when XLA compiles."""
        self.compiled_shapes.append(tuple(input_values.shape))
        out = self.model.apply({"params": params}, input_values, attention_mask, deterministic=True)
        return out.logits

    def __call__(self, params, input_values, attention_mask) -> np.ndarray:
        """float32 logits (B, num_labels)."""
        return np.asarray(self._jitted(params, np.asarray(input_values, np.float32),
                                       np.asarray(attention_mask, np.int32)))


def make_predict_fn(model) -> PredictFn:
    """A jitted forward pass for `model`, compiled once per (batch, samples) shape."""
    return PredictFn(model)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def model_class_names(config: HubertConfig) -> list[str]:
    """The head's class names: config.label_names, else the 6 emotion classes for a 6-way head, else indices."""
    if config.label_names is not None:
        return list(config.label_names)
    if config.num_labels == len(EMOTION_CLASSES):
        return list(EMOTION_CLASSES)
    return [f"LABEL_{i}" for i in range(config.num_labels)]


def check_label_space(config: HubertConfig, label_space: str, native_labels: Sequence[str] = (),
                      corpus: str = "") -> list[str]:
    """The class names to score against; EvaluationError when the model's head does not fit the label space."""
    if label_space not in LABEL_SPACES:
        raise EvaluationError(f"label space must be one of {LABEL_SPACES}, got {label_space!r}")
    head = model_class_names(config)
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


# --------------------------------------------------------------------------------------------------------------
# Prepared corpora
# --------------------------------------------------------------------------------------------------------------


def evaluate_corpus(model, params, corpus, split: str = "test", batch_size: int = 8,
                    data_dir: str | Path | None = None, label_space: str = "emotion",
                    predict_fn: PredictFn | None = None, max_seconds: float | None = None) -> dict:
    """Metrics of `model` on one prepared split, with per-utterance split index, label, prediction and logits."""
    from .data import batching, dataset

    prepared = dataset.open_prepared(corpus, data_dir) if isinstance(corpus, (str, Path)) else corpus
    name = prepared.name
    names = check_label_space(model.config, label_space, list(prepared.native_labels), name)
    predict = predict_fn or make_predict_fn(model)
    source = prepared.split(split)
    labels, logits, order, seconds = [], [], [], 0.0
    for batch in batching.eval_batches(source, batch_size, max_seconds=max_seconds, corpus=name):
        real = np.asarray(batch.weights) > 0
        order.extend(int(i) for i in batch.indices[real])
        out = predict(params, batch.input_values, batch.attention_mask)
        truth = batch.labels if label_space == "emotion" else batch.native_labels
        labels.append(np.asarray(truth)[real])
        logits.append(out[real])
        seconds += float(batch.n_seconds)
    y_true = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    all_logits = np.concatenate(logits) if logits else np.zeros((0, len(names)), np.float32)
    y_pred = all_logits.argmax(axis=-1)
    result = {"corpus": name, "split": split, "label_space": label_space, "audio_seconds": seconds,
              **metrics.summarize(y_true, y_pred, len(names), names)}
    result["utterances"] = [{"index": int(i), "label": int(t), "pred": int(p), "logits": [float(v) for v in lg]}
                            for i, t, p, lg in zip(order, y_true, y_pred, all_logits)]
    return result


# --------------------------------------------------------------------------------------------------------------
# Audio files
# --------------------------------------------------------------------------------------------------------------


def audio_files(path_or_dir: str | Path) -> list[Path]:
    """The file itself, or every audio file (by extension) under a directory, sorted."""
    path = Path(path_or_dir)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
    return [path]


def chunk_audio(audio: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """Split into ceil(len/chunk_samples) near-equal consecutive chunks, each at most chunk_samples long."""
    n = max(1, math.ceil(len(audio) / chunk_samples))
    return np.array_split(audio, n)


def predict_audio(model, params, path_or_dir: str | Path, chunk_seconds: float = 3.0, batch_size: int = 8,
                  predict_fn: PredictFn | None = None) -> list[dict]:
    """6-class (or head-class) probabilities for audio files; a bad file yields {'file', 'error'} and the rest run.

    Each file is decoded at any sample rate to 16 kHz mono, split into near-equal chunks of at most
    `chunk_seconds` (the model card feeds 3 s), each chunk normalised like Wav2Vec2FeatureExtractor(do_normalize)
    and padded (with its mask) to one fixed shape. The file's logits are the chunk logits averaged with weights
    proportional to chunk length; probabilities are their softmax.
    """

    names = model_class_names(model.config)
    chunk_samples = int(round(chunk_seconds * SAMPLE_RATE))
    if chunk_samples < 400:
        raise EvaluationError(f"chunk_seconds={chunk_seconds} is shorter than one HuBERT frame (400 samples)")
    predict = predict_fn or make_predict_fn(model)
    files = audio_files(path_or_dir)
    results: list[dict] = [{"file": str(f)} for f in files]
    sums = np.zeros((len(files), len(names)))
    lengths = np.zeros(len(files))

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
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
            for piece in chunk_audio(audio, chunk_samples):
                results[i]["chunks"] += 1
                yield i, piece

    for owners, x, mask in _fixed_batches(chunks(), batch_size, chunk_samples):
        out = predict(params, x, mask)
        for row, owner in enumerate(owners):
            n = mask[row].sum()
            sums[owner] += n * out[row]
            lengths[owner] += n
    for i, res in enumerate(results):
        if "error" in res:
            continue
        logits = sums[i] / lengths[i]
        probs = softmax(logits)
        res.update(logits=[float(v) for v in logits], top=names[int(probs.argmax())],
                   probabilities={n: float(p) for n, p in zip(names, probs)})
    return results


def _fixed_batches(items: Iterable[tuple[int, np.ndarray]], batch_size: int, samples: int):
    """Group (owner, chunk) into normalised, zero-padded (batch_size, samples) arrays + masks; padding rows dropped."""
    pending: list[tuple[int, np.ndarray]] = []

    def emit():
        x = np.zeros((batch_size, samples), np.float32)
        mask = np.zeros((batch_size, samples), np.int32)
        mask[len(pending):] = 1  # padding rows: full mask keeps the pooled mean finite; their outputs are ignored
        for row, (_, chunk) in enumerate(pending):
            x[row, :len(chunk)] = normalize(chunk)
            mask[row, :len(chunk)] = 1
        return [owner for owner, _ in pending], x, mask

    for item in items:
        pending.append(item)
        if len(pending) == batch_size:
            yield emit()
            pending = []
    if pending:
        yield emit()


# --------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------


def _pct(v) -> str:
    """A fraction as a percentage with one decimal, '–' when undefined."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _nanmean(values: Sequence[float]) -> float:
    """Unweighted mean of the defined values (NaN when none is), as the paper's "Average UAR over all datasets"."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def markdown_table(results: Sequence[dict]) -> str:
    """Paper Table 1/2 shape: rows = corpora, columns n, UAR/WA/macro-F1 (%), an average row; then class recalls."""
    lines = ["| Corpus | # utterances | UAR (%) | WA (%) | Macro-F1 (%) |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['corpus']} | {r['n']} | {_pct(r['uar'])} | {_pct(r['wa'])} | {_pct(r['macro_f1'])} |")
    if results:
        mean = {k: _nanmean([r[k] for r in results]) for k in ("uar", "wa", "macro_f1")}
        total = sum(r["n"] for r in results)
        lines.append(f"| **Average over all datasets** | {total} | {_pct(mean['uar'])} | {_pct(mean['wa'])} | "
                     f"{_pct(mean['macro_f1'])} |")
    lines += ["", *per_class_table(results)]
    return "\n".join(lines).rstrip() + "\n"


def per_class_table(results: Sequence[dict]) -> list[str]:
    """Markdown lines of per-class recall (%) per corpus, one table per distinct class-name list."""
    lines: list[str] = []
    groups: dict[tuple[str, ...], list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(r["class_names"]), []).append(r)
    for names, rows in groups.items():
        lines += [f"| Recall (%) | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
        lines += [f"| {r['corpus']} | " + " | ".join(_pct(r["per_class_recall"][n]) for n in names) + " |"
                  for r in rows]
        lines.append("")
    return lines


def plot_confusion(cm, class_names: Sequence[str], path: str | Path, title: str | None = None) -> Path:
    """Write a row-normalised confusion-matrix heat map (counts annotated) as a PNG; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm, np.float64)
    support = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    k = len(class_names)
    fig = Figure(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            count = cm[i, j]
            text = f"{int(count)}" if float(count).is_integer() else f"{count:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def audio_table(results: Sequence[dict], class_names: Sequence[str]) -> str:
    """Markdown table of predict_audio results: file, top class, probability (%) per class; failed files marked."""
    lines = [f"| File | Top class | {' | '.join(class_names)} |", "|---|---|" + "---:|" * len(class_names)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['file']} | ERROR: {r['error']} |" + " |" * len(class_names))
        else:
            probs = " | ".join(f"{100 * r['probabilities'][n]:.1f}" for n in class_names)
            lines.append(f"| {r['file']} | {r['top']} | {probs} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# What to evaluate: checkpoints and corpus names
# --------------------------------------------------------------------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A save_pretrained directory as given, or a training workdir's best/ (falling back to final/)."""
    path = Path(path)
    if not path.is_dir():
        raise EvaluationError(f"checkpoint directory {path} does not exist; train one with "
                              "`python train.py --stage finetune` or pass --checkpoint DIR")
    if (path / "config.json").is_file():
        return path
    for sub in ("best", "final"):
        if (path / sub / "config.json").is_file():
            return path / sub
    raise EvaluationError(f"{path} is neither a checkpoint directory (config.json + params/) nor a training "
                          "workdir with best/ or final/")


def prepared_corpora(data_dir: str | Path | None = None) -> list[str]:
    """Names of the corpora prepared under data_dir (default: $EXHUBERT_DATA or data/prepared), sorted."""
    from .data.dataset import default_data_dir

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return sorted(p.parent.name for p in root.glob("*/info.json")) if root.is_dir() else []


def prepare_command(name: str, data_dir: str | Path | None = None) -> str:
    """The shell command that prepares corpus `name` into data_dir."""
    if name.startswith("demo"):
        return f"python -m exhubert_jax.data.synthetic --out data/demo_sources --prepare {data_dir or 'data/prepared'}"
    out = f" --out {data_dir}" if data_dir is not None else ""
    return f"python -m exhubert_jax.data.prepare --corpus {name} --source /path/to/{name}{out}"


def resolve_corpora(spec: str, data_dir: str | Path | None = None) -> list[str]:
    """Expand 'a,b', 'demo', 'all' or 'unseen' into prepared corpus names; EvaluationError for unprepared ones."""
    from .data.corpora import CORPORA

    prepared = prepared_corpora(data_dir)
    where = data_dir if data_dir is not None else "the data dir ($EXHUBERT_DATA or data/prepared)"
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "all":
            if not prepared:
                raise EvaluationError(f"no prepared corpora under {where}; prepare one with "
                                      f"`{prepare_command('NAME', data_dir)}`")
            names += prepared
        elif item == "unseen":
            unseen = [n for n, c in CORPORA.items() if c.group == "unseen"]
            have = [n for n in unseen if n in prepared]
            if not have:
                raise EvaluationError(f"none of the unseen corpora ({', '.join(unseen)}) is prepared under {where}; "
                                      f"prepare them with `{prepare_command('NAME', data_dir)}`")
            names += have
        elif item == "demo":
            names += [n for n, c in CORPORA.items() if c.group == "demo"]
        else:
            names.append(item)
    for n in names:
        if n not in prepared and not (Path(n) / "info.json").is_file():
            raise EvaluationError(f"corpus {n!r} is not prepared under {where} (prepared: "
                                  f"{', '.join(prepared) or 'none'}); prepare it with `{prepare_command(n, data_dir)}`")
    return list(dict.fromkeys(names))
