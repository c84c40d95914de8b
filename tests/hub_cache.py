"""A real huggingface_hub cache, as `hf download` leaves it behind (blobs named by their hash, snapshots/<commit>/ of
links to them, refs/<revision>), built from a local model folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_repo(hf_home: Path, repo: str, folder: Path, revision: str = "main") -> str:
    """Put every file of `folder` into the cache as the download of `repo` at `revision`; returns the commit."""
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    return commit
