"""A training run's checkpoints: Orbax CheckpointManager (latest N, with data-iterator state) plus best/ and final/.

A damaged step (a killed save, a lost or truncated file) is skipped: resume falls back to the newest intact one and
moves the damaged ones aside to {workdir}/checkpoints-damaged/ (nothing is deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from exhubert_jax.errors import ExhubertError, one_line, reraise_interrupt
from exhubert_jax.pretrained import CheckpointWriteError, ignore_late_reads, orbax_damage, quiet_orbax, save_pretrained
from exhubert_jax.process.run_folders import BEST

CHECKPOINTS, BEST_JSON = "checkpoints", "best.json"
DAMAGED = "checkpoints-damaged"


FINGERPRINT = "state_fingerprint"


def fingerprint(tree: Any) -> str:
    """Hash of a tree's leaf paths, shapes and dtypes (what must match for a restore)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    text = ";".join(f"{jax.tree_util.keystr(p)}:{tuple(x.shape)}:{x.dtype}" for p, x in leaves)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResumeError(ExhubertError, RuntimeError):
    """A workdir checkpoint that does not fit the run being resumed, or no intact checkpoint to resume from."""


class _Damaged(Exception):
    """Internal: one step cannot be read; carries the reason."""


class RunCheckpoints:
    """Latest-N train states (params, opt_state, step, rng, skipped) + JSON run/data state in {workdir}/checkpoints."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, say: Callable[[str], None] = print):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / CHECKPOINTS
        self.say = say
        self.damaged: dict[int, str] = {}  # step -> why it cannot be resumed from
        options = ocp.CheckpointManagerOptions(max_to_keep=max(1, keep), create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def damage(self, step: int) -> str | None:
        """Why checkpoint `step` is visibly damaged (a missing, empty or unparsable part), or None when it looks whole."""
        d = self.directory / str(step)
        meta = d / "meta" / "metadata"
        if not meta.is_file():
            return "meta/metadata (the data position) is missing"
        try:
            data = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return "meta/metadata (the data position) is truncated or not JSON"
        if not isinstance(data, dict) or "data" not in data:
            return "meta/metadata lacks the data position"
        return orbax_damage(d / "state")

    def latest_step(self) -> int | None:
        """Step of the newest checkpoint that looks intact; None when there is none at all.

        Raises ResumeError when checkpoints exist but every one is damaged (nothing is deleted or moved then).
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            why = self.damaged.get(step) or self.damage(step)
            if why is None:
                return step
            self.damaged[step] = why
        if steps:
            raise self._none_intact()
        return None

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Save the train state and JSON metadata (data position, best so far, history) atomically."""
        meta = {**meta, FINGERPRINT: fingerprint(state)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        try:
            with quiet_orbax():
                self.manager.save(int(step), args=args, force=True)
                self.manager.wait_until_finished()
        except Exception as e:  # disk full, permissions, a file system error inside Orbax/TensorStore
            reraise_interrupt(e)
            intact = [s for s in self.manager.all_steps() if s != int(step)]
            kept = f"step {max(intact)} is the newest kept one" if intact else "no earlier checkpoint is kept"
            raise CheckpointWriteError(f"cannot write checkpoint {self.directory}/{step} ({one_line(e)}); {kept}. "
                                       "Free space and run the same command to resume") from e
        self.damaged.pop(int(step), None)

    def restore(self, like_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, meta) of `step` (default latest), shaped and sharded like `like_state`.

        A damaged step falls back to the newest intact older one (the restored state's `step` tells which); damaged
        steps newer than the one restored are moved to {workdir}/checkpoints-damaged/ so the run can save them anew.
        """
        step = self.latest_step() if step is None else step
        for candidate in sorted((s for s in self.manager.all_steps() if s <= step), reverse=True):
            try:
                with quiet_orbax():
                    state, meta = self._restore_step(like_state, candidate)
            except _Damaged as e:
                self.damaged[candidate] = str(e)
                continue
            self._set_aside(candidate)
            return state, meta
        raise self._none_intact()

    def _restore_step(self, like_state: Any, step: int) -> tuple[Any, dict]:
        """Restore one step; _Damaged when its files are unreadable, ResumeError when it holds another model."""
        why = self.damaged.get(step) or self.damage(step)
        if why is not None:
            raise _Damaged(why)
        try:
            saved = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as e:  # noqa: BLE001 - damage() found the file; reading it still failed
            reraise_interrupt(e)
            raise _Damaged(f"meta/ unreadable: {one_line(e)}") from e
        if saved.get(FINGERPRINT) not in (None, fingerprint(like_state)):
            raise ResumeError(f"{self.directory}/{step}: checkpoint holds a different model/optimizer state (parameter "
                              "names, shapes or dtypes differ); use another --workdir or delete it")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as e:  # noqa: BLE001
            reraise_interrupt(e)
            ignore_late_reads()
            if saved.get(FINGERPRINT) is not None:  # same tree as ours, so the failure is in the files
                raise _Damaged(f"state/ unreadable: {one_line(e)}") from e
            raise ResumeError(f"{self.directory}/{step}: checkpoint does not match this run's model/optimizer or is "
                              f"damaged ({one_line(e)}); use another --workdir or delete it") from e
        return restored.state, dict(restored.meta)

    def _set_aside(self, restored: int) -> None:
        """Move damaged steps newer than `restored` to {workdir}/checkpoints-damaged/ (their numbers will be reused)."""
        newer = sorted(s for s in self.damaged if s > restored and (self.directory / str(s)).exists())
        for step in newer:
            target = self.workdir / DAMAGED / str(step)
            n = 1
            while target.exists():
                target, n = self.workdir / DAMAGED / f"{step}.{n}", n + 1
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
            self.say(f"checkpoint {self.directory}/{step} is damaged ({self.damaged[step]}); moved it to {target} and "
                     f"resuming from step {restored}, the newest intact one")
        if newer:
            self.manager.reload()

    def _none_intact(self) -> ResumeError:
        """The error for a workdir whose checkpoints are all damaged."""
        steps = ", ".join(f"step {s}: {why}" for s, why in sorted(self.damaged.items(), reverse=True))
        return ResumeError(f"{self.directory}: no intact checkpoint to resume from ({steps}); nothing was deleted. "
                           f"Move {self.directory} away to start afresh, or use another --workdir")

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
