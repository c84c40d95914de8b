"""Class imbalance: per-corpus class weights in the cross-entropy and each corpus's weight in a round.

`--class-weights none|balanced|FILE` (training.step.LossOptions) and `--corpus-weights equal|size|FILE`
(training.options.TrainOptions) are parsed here into what run.json records: the keyword, or the weights a FILE
holds as a mapping ({corpus: {class: weight}}, {corpus: weight}), so a resume with other weights is refused even
when only the file changed. Against the corpora trained on they become arrays that every batch carries (BatchWeights:
`class_weights`, the weight of each row's class in its corpus; `corpus_weight`, the corpus's weight in a round):
data, not constants, so one compiled step serves every corpus and every weighting.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from exhubert_jax.data.loading.batching import source_classes
from exhubert_jax.data.sources.labels import EMOTION_CLASSES
from exhubert_jax.process.options import Check, OptionsError

CLASS_WEIGHTS = ("none", "balanced")
CORPUS_WEIGHTS = ("equal", "size")
CLASS_COLUMNS = ("corpus", "class", "weight")
CORPUS_COLUMNS = ("corpus", "weight")


class WeightsError(OptionsError):
    """A weights file or mapping that cannot be used; the message names the file and its row, corpus or class."""


@dataclasses.dataclass(frozen=True)
class WeightRow:
    """One weight as given: where (`--class-weights FILE:LINE`, or the flag for a config file's mapping), corpus,
    class (None for a corpus weight) and weight."""

    where: str
    corpus: str
    name: str | None
    weight: float


def _weight(text: Any, where: str, what: str) -> float:
    """A weight as a positive finite number, else a WeightsError naming where and what it weighs."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(text, bool) or not (math.isfinite(value) and value > 0):
        raise WeightsError(f"{where}: the weight of {what} must be a positive number, got {text!r}")
    return value


def _row(where: str, fields: Sequence[Any], columns: tuple[str, ...]) -> WeightRow:
    """A checked WeightRow of one row's fields (corpus, [class,] weight)."""
    names = [str(f).strip() for f in fields[:-1]]
    if not all(names):
        raise WeightsError(f"{where}: empty {' or '.join(columns[:-1])}")
    what = f"corpus {names[0]}" + (f" class {names[1]}" if len(names) == 2 else "")
    return WeightRow(where, names[0], names[1] if len(names) == 2 else None, _weight(fields[-1], where, what))


def _file_rows(path: Path, flag: str, columns: tuple[str, ...]) -> list[WeightRow]:
    """The rows of a weights CSV (a header of exactly `columns`, then one row per weight; blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except FileNotFoundError:
        raise WeightsError(f"{flag} {path}: no such file (give {' or '.join(_keywords(columns))}, or a CSV file of "
                           f"{','.join(columns)} rows)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"{flag} {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header != list(columns):
        raise WeightsError(f"{flag} {path}:1: the header must be {','.join(columns)}, got "
                           f"{','.join(header) if header else 'nothing'}")
    rows = []
    for fields in reader:
        where = f"{flag} {path}:{reader.line_num}"
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(columns):
            raise WeightsError(f"{where}: {len(fields)} field(s), expected {len(columns)} ({','.join(columns)})")
        rows.append(_row(where, fields, columns))
    return rows


def _mapping_rows(value: Mapping, flag: str, columns: tuple[str, ...]) -> list[WeightRow]:
    """The rows of a config file's mapping: {corpus: {class: weight}} or {corpus: weight}."""
    if len(columns) == 2:
        return [_row(flag, (corpus, weight), columns) for corpus, weight in value.items()]
    rows = []
    for corpus, weights in value.items():
        if not isinstance(weights, Mapping):
            raise WeightsError(f"{flag}: corpus {corpus} must map class names to weights, got {weights!r}")
        rows.extend(_row(flag, (corpus, name, weight), columns) for name, weight in weights.items())
    return rows


def _keywords(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The keywords an option of these columns takes besides a file."""
    return CLASS_WEIGHTS if columns == CLASS_COLUMNS else CORPUS_WEIGHTS


def weight_rows(value: Any, flag: str, columns: tuple[str, ...]) -> list[WeightRow]:
    """The weights of a CSV file (a path) or a mapping, each checked (a positive number; every corpus, or corpus and
    class, given once), in the order given; a WeightsError naming the file and the row otherwise."""
    if isinstance(value, (str, Path)):
        rows = _file_rows(Path(value), flag, columns)
        origin = f"{flag} {value}"
    elif isinstance(value, Mapping):
        rows, origin = _mapping_rows(value, flag, columns), flag
    else:
        raise WeightsError(f"{flag} must be {' or '.join(_keywords(columns))}, a CSV file of {','.join(columns)} rows "
                           f"or a mapping of them, got {value!r}")
    if not rows:
        raise WeightsError(f"{origin}: no weights in it (expected {','.join(columns)} rows)")
    seen: dict[tuple, str] = {}
    for row in rows:
        key = (row.corpus, row.name)
        if key in seen:
            what = f"corpus {row.corpus}" + (f" class {row.name}" if row.name is not None else "")
            raise WeightsError(f"{row.where}: a second weight for {what} (the first: {seen[key]}); give each once")
        seen[key] = row.where
    return rows


def parse_class_weights(value: Any) -> str | dict[str, dict[str, float]]:
    """--class-weights as run.json records it: none, balanced, or {corpus: {class: weight}} read from a CSV file of
    corpus,class,weight rows (or given as that mapping in a config file)."""
    if isinstance(value, str) and value in CLASS_WEIGHTS:
        return value
    table: dict[str, dict[str, float]] = {}
    for row in weight_rows(value, "--class-weights", CLASS_COLUMNS):
        table.setdefault(row.corpus, {})[row.name] = row.weight
    return {corpus: dict(sorted(weights.items())) for corpus, weights in sorted(table.items())}


def parse_corpus_weights(value: Any) -> str | dict[str, float]:
    """--corpus-weights as run.json records it: equal, size, or {corpus: weight} read from a CSV file of
    corpus,weight rows (or given as that mapping in a config file)."""
    if isinstance(value, str) and value in CORPUS_WEIGHTS:
        return value
    return dict(sorted((row.corpus, row.weight) for row in weight_rows(value, "--corpus-weights", CORPUS_COLUMNS)))


# What a parsed value must be (a flag's or config file's text is parsed first, so a library caller passing a file
# reads it with parse_class_weights / parse_corpus_weights).
CLASS_WEIGHTS_CHECK = Check(lambda v: v in CLASS_WEIGHTS or isinstance(v, Mapping),
                            "must be none, balanced or {corpus: {class: weight}} (parse_class_weights reads a CSV "
                            "file of corpus,class,weight rows)")
CORPUS_WEIGHTS_CHECK = Check(lambda v: v in CORPUS_WEIGHTS or isinstance(v, Mapping),
                             "must be equal, size or {corpus: weight} (parse_corpus_weights reads a CSV file of "
                             "corpus,weight rows)")


# ------------------------------------------------------------------------------------- against the corpora trained on


def known(name: str, names: Sequence[str], where: str, unknown: str) -> str:
    """name when it is one of names, else a WeightsError: where it was given, what is unknown and the nearest known
    names (as an unknown native label is reported), or all of them when none is close."""
    if name in names:
        return name
    near = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    hint = f"nearest known: {', '.join(near)}" if near else f"none is close; known: {', '.join(names)}"
    raise WeightsError(f"{where}: {unknown} ({hint})")


def _corpus(row: WeightRow, sources: Mapping[str, Any]) -> str:
    """The row's corpus, which must be one of the corpora trained on."""
    return known(row.corpus, sorted(sources), row.where, f"corpus {row.corpus!r} is not among the corpora trained on")


def class_names(source: Any, label_space: str) -> tuple[str, ...]:
    """The class names of a training source in a label space: the 6 emotion classes, or its native labels (their
    indices as text for a source that names none)."""
    if label_space == "emotion":
        return EMOTION_CLASSES
    names = getattr(source, "native_labels", None)
    if names is None:
        names = [str(i) for i in range(int(source_classes(source, label_space).max(initial=-1)) + 1)]
    return tuple(names)


def balanced_weights(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """n_samples / (n_present * count) for each class present (scikit-learn's compute_class_weight("balanced") over
    the classes present), 0 for a class absent from `classes` (never a target, so never weighed). Rows without a
    hard label (-1: kept for their label distribution alone) are not counted."""
    classes = np.asarray(classes, np.int64)
    classes = classes[classes >= 0]
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    present = counts > 0
    out = np.zeros(n_classes, np.float64)
    out[present] = len(classes) / (present.sum() * counts[present])
    return out


def class_weight_table(value: Any, sources: Mapping[str, Any], label_space: str) -> dict[str, np.ndarray] | None:
    """{corpus: weight of each class index} of --class-weights over the training sources (None for none): balanced
    from each training split's labels; a file's or mapping's weights by name, 1 for every class it leaves out."""
    if isinstance(value, str) and value == "none":
        return None
    names = {corpus: class_names(source, label_space) for corpus, source in sources.items()}
    if isinstance(value, str) and value == "balanced":
        return {corpus: balanced_weights(source_classes(source, label_space), len(names[corpus]))
                for corpus, source in sources.items()}
    table = {corpus: np.ones(len(names[corpus]), np.float64) for corpus in sources}
    for row in weight_rows(value, "--class-weights", CLASS_COLUMNS):
        corpus = _corpus(row, sources)
        name = known(row.name, names[corpus], row.where, f"corpus {corpus} has no {label_space} class {row.name!r}")
        table[corpus][names[corpus].index(name)] = row.weight
    return table


def corpus_weight_table(value: Any, sources: Mapping[str, Any]) -> dict[str, float] | None:
    """{corpus: weight of its loss in a round} of --corpus-weights (None for equal): size, each training split's
    size over their mean; a file's or mapping's weights, 1 for every corpus it leaves out."""
    if isinstance(value, str) and value == "equal":
        return None
    if isinstance(value, str) and value == "size":
        mean = sum(len(s) for s in sources.values()) / len(sources)
        return {corpus: len(source) / mean for corpus, source in sources.items()}
    table = dict.fromkeys(sources, 1.0)
    for row in weight_rows(value, "--corpus-weights", CORPUS_COLUMNS):
        table[_corpus(row, sources)] = row.weight
    return table


@dataclasses.dataclass(frozen=True)
class BatchWeights:
    """The weights a training batch carries, by corpus: its classes' (None: unweighted) and its own weight in a
    round (None: every corpus weighs the same)."""

    classes: Mapping[str, np.ndarray] | None = None
    corpora: Mapping[str, float] | None = None

    @classmethod
    def of(cls, opts: Any, sources: Mapping[str, Any]) -> "BatchWeights":
        """The weights of the options' --class-weights and --corpus-weights over the training sources."""
        return cls(class_weight_table(opts.class_weights, sources, opts.label_space),
                   corpus_weight_table(opts.corpus_weights, sources))

    def add(self, arrays: dict[str, np.ndarray], corpus: str) -> dict[str, np.ndarray]:
        """A batch's arrays with `class_weights` (the weight of each row's target class in its corpus) and
        `corpus_weight` (the corpus's weight, on every row: a batch is split over the devices by rows) where these
        weights are set; unchanged otherwise."""
        out = dict(arrays)
        dtype = arrays["weights"].dtype
        if self.classes is not None:  # a row without a hard label (-1) trains on its distribution, unweighted
            targets = arrays["targets"]
            out["class_weights"] = np.where(targets >= 0, np.asarray(self.classes[corpus], dtype)[np.maximum(targets, 0)],
                                            np.asarray(1, dtype)).astype(dtype)
        if self.corpora is not None:
            out["corpus_weight"] = np.full(arrays["weights"].shape, self.corpora[corpus], dtype)
        return out
