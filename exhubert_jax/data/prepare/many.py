"""Preparing many corpora in one command: every corpus folder in EmoNet's layout under a root, or the folds of
every EmoBox corpus folder; one JSON summary line each, and a folder that fails does not stop the others."""

from __future__ import annotations

import json
from typing import Any

from exhubert_jax.data.errors import DataError
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.prepare.write import say_stderr
from exhubert_jax.data.sources.emonet import find_corpora


def prepare_emonet_root(root: str, options: dict[str, Any]) -> int:
    """Prepare every corpus folder under an EmoNet root, printing one JSON summary line per corpus; a folder that
    fails is reported by name and the others still run (exit status 2 if any failed)."""

    found, problems = find_corpora(root)
    for _, problem in problems:
        say_stderr(f"error: {problem}")
    failed = [str(d) for folders, _ in problems for d in folders]
    for folder, entry in found:
        try:
            print(json.dumps(prepare_corpus(entry.name, folder, **options)), flush=True)
        except DataError as e:
            say_stderr(f"error: {e}")
            failed.append(str(folder))
    if failed:
        say_stderr(f"error: {len(failed)} corpus folder(s) not prepared: {', '.join(failed)}")
    return 2 if failed else 0


def prepare_emobox_folders(directory: str, root: str, options: dict[str, Any]) -> int:
    """Prepare the folds of every EmoBox corpus folder in DIR, printing one JSON summary line per fold; a corpus
    that fails is reported and the others still run (exit status 2 if any failed)."""
    from exhubert_jax.data.prepare.folds import prepare_emobox_corpus
    from exhubert_jax.data.sources.emobox import check_root, corpus_folders

    check_root(root)
    folders, failed = corpus_folders(directory), []
    for folder in folders:
        try:
            for summary in prepare_emobox_corpus(folder, root, **options):
                print(json.dumps(summary), flush=True)
        except DataError as e:
            say_stderr(f"error: {e}")
            failed.append(str(folder))
    if len(folders) > 1 and failed:
        say_stderr(f"error: {len(failed)} EmoBox corpus folder(s) not prepared: {', '.join(failed)}")
    return 2 if failed else 0
