"""Emotion corpora for ExHuBERT: the 6-class label space, corpus registry and readers, speaker-independent
splits and k-fold, EmoBox's folds, prepared corpora as TensorFlow Datasets (array_record), and length-bucketed /
round-robin batching."""

from .audio import SAMPLE_RATE, load_audio
from .batching import Batch, CorpusBatches, RoundRobin, default_buckets, eval_batches, train_batches
from .corpora import CORPORA, Corpus, corpus_names, get_corpus
from .dataset import PreparedCorpus, PreparedSplit, default_data_dir, open_prepared, prepared_names
from .errors import (AudioError, DataError, LayoutError, ManifestError, MissingSourceError, PreparedDataError,
                     SplitError, UnknownCorpusError, UnknownLabelError)
from .labels import CLASSES, LabelTable, class_index, load_label_table
from .prefetch import Prefetch
from .readers import READERS, Utterance, read_manifest
from .splits import assign_splits, kfold_assign

_LAZY = {"prepare_corpus": "prepare", "make_demo_corpora": "synthetic", "prepare_demo": "synthetic",
         "prepare_folds": "folds", "prepare_emobox": "folds"}


def __getattr__(name: str):
    """prepare/folds/synthetic are imported on first use, so `python -m exhubert_jax.data.prepare` runs cleanly."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AudioError", "Batch", "CLASSES", "CORPORA", "Corpus", "CorpusBatches", "DataError", "LabelTable",
    "LayoutError", "ManifestError", "MissingSourceError", "Prefetch", "PreparedCorpus", "PreparedDataError",
    "PreparedSplit", "READERS", "RoundRobin", "SAMPLE_RATE", "SplitError", "UnknownCorpusError", "UnknownLabelError", "Utterance",
    "assign_splits", "class_index", "corpus_names", "default_buckets", "default_data_dir", "eval_batches",
    "get_corpus", "kfold_assign", "load_audio", "load_label_table", "make_demo_corpora", "open_prepared",
    "prepare_corpus", "prepare_demo", "prepare_emobox", "prepare_folds", "prepared_names", "read_manifest",
    "train_batches",
]
