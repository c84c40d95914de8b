"""Emotion corpora for ExHuBERT: the 6-class label space, corpus registry and readers, speaker-independent
splits and k-fold, EmoBox's folds, prepared corpora as TensorFlow Datasets (array_record), and length-bucketed /
round-robin batching."""

# Every name is imported on first use: `python -m exhubert_jax.data.prepare` starts without JAX (and answers
# Ctrl-C at once, see exhubert_jax.process.commands).
_LAZY = {
    **dict.fromkeys(("SAMPLE_RATE", "load_audio"), "audio"),
    **dict.fromkeys(("Batch", "CorpusBatches", "RoundRobin", "default_buckets", "eval_batches", "train_batches"),
                    "batching"),
    **dict.fromkeys(("CORPORA", "Corpus", "corpus_names", "get_corpus"), "corpora"),
    **dict.fromkeys(("PreparedCorpus", "PreparedSplit", "default_data_dir", "open_prepared", "prepared_names"),
                    "dataset"),
    **dict.fromkeys(("AudioError", "DataError", "LayoutError", "ManifestError", "MissingSourceError",
                     "PreparedDataError", "SplitError", "UnknownCorpusError", "UnknownLabelError"), "errors"),
    **dict.fromkeys(("CLASSES", "LabelTable", "class_index", "load_label_table"), "labels"),
    "Prefetch": "prefetch",
    **dict.fromkeys(("READERS", "Utterance", "read_manifest"), "readers"),
    **dict.fromkeys(("assign_splits", "kfold_assign"), "splits"),
    "prepare_corpus": "prepare", "make_demo_corpora": "synthetic", "prepare_demo": "synthetic",
    "prepare_folds": "folds", "prepare_emobox": "folds",
}


def __getattr__(name: str):
    """The names above, imported from their module on first use."""
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
