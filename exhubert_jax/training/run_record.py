"""run.json: every resolved option of a run, its model config, corpora fingerprints, package versions and commit;
resuming with an option that changes the result is refused, naming the option."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.run_folders import RUN_JSON
from exhubert_jax.training.options import TrainOptions, dest_of, flag_text, flags, resumable

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "transformers", "torch")
# Options that may differ on resume without changing the parameters trained (how often to look, not what to learn):
# those declared resumable (exhubert_jax.training.options).
RESUMABLE = resumable(TrainOptions)
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainOptions)}
# A key an older run.json lacks is an option added since: the run had its default.
DEFAULTS = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(TrainOptions)}, default=str))
FLAGS = flags(TrainOptions)  # how a refusal names each option


class RunConfigError(ExhubertError):
    """A resumed run whose options differ from the ones it was started with."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide the numerics."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The project's git commit (with '+dirty' for uncommitted changes), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def build(options: Mapping[str, Any], model_config: Mapping[str, Any], corpora: Mapping[str, str | None],
          **extra: Any) -> dict:
    """The run.json document."""
    return {"options": dict(options), "model": dict(model_config), "corpora": dict(corpora),
            "packages": package_versions(), "commit": git_commit(), **extra}


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Options, model settings and corpora that differ between two run.json documents and change the result."""
    diffs = []
    current = json.loads(json.dumps(current, default=str))  # as it will be read back (tuples as lists)
    saved_opts, cur_opts = saved.get("options", {}), current.get("options", {})
    steps_matter = cur_opts.get("schedule", "constant") != "constant"  # a decaying schedule is shaped by --steps
    for key in sorted(set(saved_opts) | set(cur_opts)):
        if key in RESUMABLE or (key == "steps" and not steps_matter):
            continue
        was, now = saved_opts.get(key, DEFAULTS.get(key)), cur_opts.get(key, DEFAULTS.get(key))
        if was != now:
            flag = FLAGS.get(key, f"--{key.replace('_', '-')}")
            diffs.append(f"{flag} (was {was!r}, now {now!r})")
    for key in sorted(set(saved.get("model", {})) | set(current.get("model", {}))):
        if saved.get("model", {}).get(key) != current.get("model", {}).get(key):
            diffs.append(f"model {key} (was {saved['model'].get(key)!r}, now {current['model'].get(key)!r})")
    return diffs + list(corpus_changes(saved, current))


def _prepared(document: Mapping[str, Any], name: str) -> str:
    """' prepared TIME' of one corpus of a run.json, empty where it is not recorded (older runs and corpora)."""
    when = (document.get("prepared") or {}).get(name)
    return f" prepared {when}" if when else ""


def corpus_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, str]:
    """{change: what to do} for each training corpus added, left out or prepared again since a run started; a
    corpus prepared again is named with its old and new fingerprint (first 12 digits) and preparation time."""
    was, now = saved.get("corpora") or {}, current.get("corpora") or {}
    fresh = "or train into a fresh --workdir"
    out = {}
    for name in sorted(set(was) | set(now)):
        if name not in was:
            out[f"corpus {name} (not among the run's corpora: {', '.join(sorted(was))})"] = f"leave it out, {fresh}"
        elif name not in now:
            out[f"corpus {name} (among the run's corpora, now left out)"] = f"name it again, {fresh}"
        elif was[name] != now[name]:
            old, new = (f"{str(fp)[:12] if fp else 'none'}{_prepared(doc, name)}"
                        for fp, doc in ((was[name], saved), (now[name], current)))
            out[f"corpus {name} was prepared again since the run started (fingerprint was {old}, now {new})"] = \
                f"prepare it back as it was, {fresh}"
    return out


def write_or_check(workdir: str | Path, document: dict, resuming: bool) -> Path:
    """Write run.json for a new run; on resume, refuse result-changing differences and keep the original file."""
    path = Path(workdir) / RUN_JSON
    if resuming and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise RunConfigError(f"{path} is damaged ({e.__class__.__name__}: {str(e).splitlines()[0]}), so the run "
                                 "cannot be checked against the options it started with; restore it from a copy, "
                                 "or resume into another --workdir") from None
        if not isinstance(saved, dict):
            raise RunConfigError(f"{path} is damaged (it holds a {type(saved).__name__}, not a run record); restore "
                                 "it from a copy, or resume into another --workdir")
        diffs = differences(saved, document)
        if diffs:
            advice = corpus_changes(saved, document).get(diffs[0], "use the original settings to resume, or "
                                                                       "another --workdir")
            raise RunConfigError(f"{path.parent} was started with other settings: {diffs[0]}"
                                 + (f" and {len(diffs) - 1} more" if len(diffs) > 1 else "") + f"; {advice}")
        return path
    return write(path.parent, document)


def write(workdir: str | Path, document: Mapping[str, Any]) -> Path:
    """Write {workdir}/run.json atomically (a reader never sees half a file)."""
    path = Path(workdir) / RUN_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(document), indent=2, default=str))
    tmp.replace(path)
    return path


def init_adapters(init: str | None) -> list[str]:
    """The adapters the checkpoint a run started from already had (none for a random init or a missing one)."""
    from exhubert_jax.pretrained import CheckpointError, load_config
    from exhubert_jax.process.run_folders import resolve_checkpoint_dir

    if not init:
        return []
    try:
        return list(load_config(resolve_checkpoint_dir(init)[0]).adapters)
    except (CheckpointError, FileNotFoundError):
        return []


def is_run_json(document: Mapping[str, Any]) -> bool:
    """Whether a config document is a run's run.json (its options are nested, beside the model and packages)."""
    return isinstance(document.get("options"), dict) and ("model" in document or "packages" in document)


def as_config(document: Mapping[str, Any]) -> dict:
    """train.py's config keys of a run.json (the same stage, corpora, initialisation and options, so
    `train.py --config RUN/run.json` runs it again); any other document as it is."""
    if not is_run_json(document):
        return dict(document)
    stage = document.get("stage", "finetune")
    out = {"stage": stage, **{k: document[k] for k in ("init", "freeze", "dtype", "remat", "task", "copies", "style")
                              if document.get(k) is not None}}
    added = [a for a in document.get("adapters") or [] if a not in init_adapters(document.get("init"))]
    if added:  # what --adapter added to the initial model
        out["adapter"] = added
    corpora = list(document.get("corpora", {}))
    if corpora:
        out["corpus" if stage == "transfer" else "corpora"] = corpora[0] if stage == "transfer" else ",".join(corpora)
    for key, value in document["options"].items():
        field = TRAIN_FIELDS.get(key)
        if field is not None and dest_of(field) and stage in field.metadata["option"].stages and value is not None:
            out[key] = flag_text(field, value)
    return out
