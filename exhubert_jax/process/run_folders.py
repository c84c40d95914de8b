"""A training run's folder as other commands read it: its run.json, and which checkpoint (best/, else final/) a
workdir holds. Writing them is training's (training.run_record, training.checkpoints)."""

from __future__ import annotations

import json
import os
from pathlib import Path

RUN_JSON = "run.json"
BEST, FINAL = "best", "final"


def read_run(workdir: str | Path) -> dict:
    """{workdir}/run.json, or {} when there is none or it cannot be parsed (a run from before run.json existed)."""
    try:
        document = json.loads((Path(workdir) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


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
