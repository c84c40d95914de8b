"""A training run's checkpoints: Orbax CheckpointManager (latest N, with data-iterator state) plus best/ and final/."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from .checkpoint import save_pretrained
from .errors import ExhubertError

CHECKPOINTS, BEST, FINAL, BEST_JSON = "checkpoints", "best", "final", "best.json"


FINGERPRINT = "state_fingerprint"


def fingerprint(tree: Any) -> str:
    """Hash of a tree's leaf paths, shapes and dtypes (what must match for a restore)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    text = ";".join(f"{jax.tree_util.keystr(p)}:{tuple(x.shape)}:{x.dtype}" for p, x in leaves)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResumeError(ExhubertError, RuntimeError):
    """A workdir checkpoint that does not fit the run being resumed."""


class RunCheckpoints:
    """Latest-N train states (params, opt_state, step, rng, skipped) + JSON run/data state in {workdir}/checkpoints."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / CHECKPOINTS
        options = ocp.CheckpointManagerOptions(max_to_keep=max(1, keep), create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Save the train state and JSON metadata (data position, best so far, history) atomically."""
        meta = {**meta, FINGERPRINT: fingerprint(state)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(int(step), args=args, force=True)
        self.manager.wait_until_finished()

    def restore(self, like_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, meta) of `step` (default latest), shaped and sharded like `like_state`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        saved = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        if saved.get(FINGERPRINT) not in (None, fingerprint(like_state)):
            raise ResumeError(f"{self.directory}/{step}: checkpoint holds a different model/optimizer state (parameter "
                              "names, shapes or dtypes differ); use another --workdir or delete it")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        try:
            restored = self.manager.restore(step, args=args)
        except (ValueError, KeyError, TypeError) as e:
            detail = " ".join(str(e).split())[:240]
            raise ResumeError(f"{self.directory}/{step}: checkpoint does not match this run's model/optimizer "
                              f"({type(e).__name__}: {detail}...); use another --workdir or delete it") from e
        return restored.state, dict(restored.meta)

    def export(self, kind: str, model_or_config: Any, params: Any, info: dict | None = None) -> Path:
        """save_pretrained the params to {workdir}/{kind}/ (best or final); best also writes best.json."""
        path = save_pretrained(self.workdir / kind, model_or_config, jax.device_get(params))
        if info is not None:
            tmp = self.workdir / f".{kind}.json.tmp"
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(self.workdir / (BEST_JSON if kind == BEST else f"{kind}.json"))
        return path

    def close(self) -> None:
        """Finish pending writes and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def resolve_checkpoint_dir(path: str | os.PathLike) -> tuple[Path, str | None]:
    """(checkpoint directory, which) for a save_pretrained directory (which=None) or a training workdir, whose
    best/ is used, else final/ (which="best"/"final"); a FileNotFoundError names what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    if (path / "config.json").is_file():
        return path, None
    for kind in (BEST, FINAL):
        if (path / kind / "config.json").is_file():
            return path / kind, kind
    raise FileNotFoundError(f"{path} is neither a checkpoint directory (config.json + params/) nor a training "
                            f"workdir with {BEST}/ or {FINAL}/")
