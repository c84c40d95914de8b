"""Prepare a corpus: read, map labels, split, decode to 16 kHz int16, and write it as a TensorFlow Dataset
(array_record files, through the corpus's TFDS builder; see builders.py and data.loading.dataset for the layout). The
command line is data.prepare.command (python -m exhubert_jax.data.prepare)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from exhubert_jax.data.errors import SplitError
from exhubert_jax.data.loading.dataset import default_data_dir
from exhubert_jax.data.prepare.splits import assign_splits, auto_method, parse_kfold, with_soft_only
from exhubert_jax.data.prepare.write import Options, origin_of, write_dataset
from exhubert_jax.data.sources.labels import load_label_table
from exhubert_jax.data.sources.utterances import is_emonet, read_mapped, resolve_entry


def prepare_corpus(corpus: str, source: str | Path | None = None, out: str | Path | None = None, *,
                   manifest: str | Path | None = None, split_method: str | None = None, seed: int = 0,
                   on_error: str = "skip", force: bool = False, label_map: str | Path | None = None,
                   workers: int = 1, progress: bool = True, log: Callable[[str], None] | None = None,
                   keep_no_majority: bool = False) -> dict[str, Any]:
    """Prepare one corpus into {out}/{name}/ (a TFDS dataset, see dataset.py) and return the summary; a no-op
    when nothing changed and its files are intact. Messages (skipped files, counts) go to log, by default
    stderr. A k-fold split method (kfold:K) is prepared by folds.prepare_folds, one dataset per fold.
    keep_no_majority: keep the utterances without a majority label that have a label distribution (for soft
    targets; they have no hard label, and the others are split as without them)."""
    options = Options(on_error, force, workers, progress, log, keep_no_majority)
    options.check()
    entry = resolve_entry(corpus, source, manifest)
    out = Path(out) if out is not None else default_data_dir()
    table = load_label_table(label_map)
    kept, dropped, used = read_mapped(entry, source, manifest, table, keep_no_majority)
    hard = [r.index is not None for _, r in kept]
    labelled = [u for (u, _), h in zip(kept, hard) if h]
    method = split_method or ("own" if is_emonet(source, manifest) else entry.split)
    method = auto_method(labelled) if method == "auto" else method
    if parse_kfold(method):
        raise SplitError(f"split method {method!r} makes one dataset per fold: use --folds K "
                         "(exhubert_jax.data.prepare.folds.prepare_folds)")
    splits = with_soft_only([u for u, _ in kept], hard, assign_splits(labelled, method, seed, key=entry.name),
                            own=method == "own")
    items = [(u, r, s) for (u, r), s in zip(kept, splits)]
    origin = origin_of(entry.name, source, manifest, out, split_method, seed, label_map, keep_no_majority)
    summary = write_dataset(entry, items, dropped, used, table, out, method, seed, origin, options)
    if summary.get("speaker_independent") is None:
        why = "EmoNet layout" if is_emonet(source, manifest) else "not given"
        options.say(f"{entry.name}: speakers are unknown ({why}): split method {method!r}; whether the split is "
                    "speaker-independent cannot be checked")
    return summary
