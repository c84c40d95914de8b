"""Corpora prepared as folds, one TFDS dataset per fold: speaker-independent k-fold of any corpus with speakers
(`{corpus}-fold{k}of{K}`), and EmoBox's published folds (`{corpus}-emobox-fold{N}`)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from exhubert_jax.data.errors import UnknownCorpusError
from exhubert_jax.data.loading.dataset import default_data_dir
from exhubert_jax.data.prepare.plan import Origin
from exhubert_jax.data.prepare.splits import (HOLDOUT_FRACTION, kfold_assign, kfold_splits, stratified_holdout,
                                              with_soft_only)
from exhubert_jax.data.prepare.write import Options, origin_of, write_dataset
from exhubert_jax.data.sources import emobox
from exhubert_jax.data.sources.corpora import EMOBOX, Corpus, fold_entry, fold_name, get_corpus, user_corpus
from exhubert_jax.data.sources.labels import load_label_table
from exhubert_jax.data.sources.utterances import map_labels, read_mapped, resolve_entry


def prepare_folds(corpus: str, k: int, source: str | Path | None = None, out: str | Path | None = None, *,
                  manifest: str | Path | None = None, seed: int = 0, label_map: str | Path | None = None,
                  **options: Any) -> list[dict[str, Any]]:
    """Prepare K speaker-independent folds of a corpus (kfold_assign: whole speakers, IEMOCAP sessions, balanced
    by utterance count); fold k's test split is its speakers. Returns one summary per fold. Utterances kept for
    their label distribution alone (keep_no_majority) follow their speaker and move no other."""
    opts = Options(**options)
    opts.check()
    entry = resolve_entry(corpus, source, manifest)
    out = Path(out) if out is not None else default_data_dir()
    table = load_label_table(label_map)
    kept, dropped, used = read_mapped(entry, source, manifest, table, opts.keep_no_majority)
    hard = [r.index is not None for _, r in kept]
    utts = [u for (u, _), h in zip(kept, hard) if h]
    folds = kfold_assign(utts, k, entry.name)
    splits = [with_soft_only([u for u, _ in kept], hard, kfold_splits(utts, folds, f, seed, entry.name))
              for f in range(k)]  # every fold checked first
    origin = origin_of(entry.name, source, manifest, out, f"kfold:{k}", seed, label_map, opts.keep_no_majority)
    summaries = []
    for f, split in enumerate(splits):
        fe = fold_entry(entry, fold_name(entry.name, f + 1, k), how=f"fold {f + 1} of {k} by speaker")
        items = [(u, r, s) for (u, r), s in zip(kept, split)]
        fold_origin = replace(origin, meta={**origin.meta, "fold": f + 1})
        summaries.append(write_dataset(fe, items, dropped, used, table, out, f"kfold:{k}", seed, fold_origin, opts))
    return summaries


def _entry(folder: Path) -> Corpus:
    """The registry entry for an EmoBox corpus folder name (cremad -> crema-d), else a user corpus."""
    try:
        return get_corpus(folder.name)
    except UnknownCorpusError:
        return user_corpus(folder.name)


def _command(folder: Path, root: Path, out: Path, seed: int, label_map: str | Path | None) -> str:
    """The command line that prepares this EmoBox corpus folder again."""
    args = ["--emobox", str(folder.resolve()), "--emobox-root", str(root.resolve()), "--out", str(out.resolve())]
    args += ["--seed", str(seed)] if seed else []
    args += ["--label-map", str(Path(label_map).resolve())] if label_map is not None else []
    return "python -m exhubert_jax.data.prepare " + " ".join(shlex.quote(a) for a in args)


def _with_validation(utts: list, seed: int, key: str) -> tuple[list, str]:
    """The fold's utterances with a validation split: EmoBox's own, else a seeded label-stratified 20 % of
    train; and the policy in words."""
    if any(u.split == "validation" for u in utts):
        return utts, "EmoBox's own (its valid list)"
    train = [u for u in utts if u.split == "train"]
    held = dict(zip(train, stratified_holdout([u.native_label for u in train], HOLDOUT_FRACTION, seed, key)))
    utts = [replace(u, split="validation") if held.get(u) else u for u in utts]
    return sorted(utts), f"seeded label-stratified {HOLDOUT_FRACTION:.0%} of EmoBox's train list (seed {seed})"


def prepare_emobox_corpus(folder: Path, root: str | Path, out: str | Path | None = None, *, seed: int = 0,
                          label_map: str | Path | None = None, **options: Any) -> list[dict[str, Any]]:
    """Prepare every fold of one EmoBox corpus folder; returns one summary per fold (with whether its test
    speakers are disjoint from its train speakers, over the files whose speaker the corpus reader knows)."""
    opts = Options(**options)
    opts.check()
    folder, root = Path(folder), emobox.check_root(root)
    out = Path(out) if out is not None else default_data_dir()
    entry, table = _entry(folder), load_label_table(label_map)
    corpus = emobox.read_list(folder / f"{folder.name}.jsonl", root)
    map_labels(table, entry.name, list(corpus.values()))  # every unknown label, named with its file and line
    lists = emobox.fold_files(folder)
    folds = {n: emobox.read_fold(files, root, corpus) for n, files in lists.items()}  # every list checked first
    speakers, how = emobox.known_speakers(entry.reader, list(corpus.values()))
    opts.say(f"{entry.name}: speakers of {len(speakers)} of {len(corpus)} listed files known ({how})")
    command = _command(folder, root, out, seed, label_map)
    summaries = []
    for n, files in lists.items():
        name = fold_name(entry.name, n)
        utts, policy = _with_validation(emobox.with_speakers(folds[n], speakers), seed, name)
        kept, dropped, used = map_labels(table, entry.name, utts)
        items = [(u, r, u.split) for u, r in kept]
        meta = {"source": str(folder.resolve()), "manifest": None, "emobox_root": str(root.resolve()), "fold": n,
                "emobox_lists": {s: str(p.resolve()) for s, p in files.items()}, "validation": policy,
                "speakers_from": how}
        fe = fold_entry(entry, name, EMOBOX, how=f"EmoBox fold {n}")
        summaries.append(write_dataset(fe, items, dropped, used, table, out, "emobox", seed,
                                       Origin(root, command, meta), opts))
        opts.say(_speaker_line(summaries[-1]))
    return summaries


def _speaker_line(summary: dict[str, Any]) -> str:
    """Whether a fold's test speakers are disjoint from its train and validation speakers, in words."""
    disjoint = summary["test_speakers_disjoint"]
    state = {True: "disjoint from", False: "shared with", None: "unknown (no speaker known) against"}[disjoint]
    return f"{summary['corpus']}: test speakers {state} train/validation speakers"


def prepare_emobox(directory: str | Path, root: str | Path, out: str | Path | None = None,
                   **kwargs: Any) -> list[dict[str, Any]]:
    """Prepare every fold of every EmoBox corpus folder in DIR (DIR itself, or EmoBox's data/ folder); the first
    corpus that fails stops it (the command line reports it and goes on with the others)."""
    emobox.check_root(root)
    return [s for folder in emobox.corpus_folders(directory) for s in prepare_emobox_corpus(folder, root, out,
                                                                                           **kwargs)]
