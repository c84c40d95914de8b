"""Protocol runs: every fold of a corpus, or each corpus left out, or each cell of a sweep, as train.py runs in
their own workdirs, each evaluated on its test corpus's test split; an interrupted protocol resumes at the run it
stopped in (that run resumes from its checkpoints). Writes WORKDIR/results.md and results.json: a row per run,
mean ± sd and the pooled UAR. The command is protocols.runner (python -m exhubert_jax.protocol)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process.atomic_files import write_text
from exhubert_jax.process.interrupts import Interrupted

RESULT = "protocol_eval.json"  # a stage's test evaluation, in its workdir: the mark that the stage is done
PLAN = "protocol.json"
OWN_FLAGS = ("--corpus", "--corpora", "--workdir", "--data-dir")


class ProtocolError(ExhubertError):
    """A protocol that cannot run as given, or a run of it that failed."""


@dataclass(frozen=True)
class Stage:
    """One train.py invocation of a run and the evaluation column its checkpoint fills."""

    column: str
    argv: tuple[str, ...]
    workdir: Path
    label_space: str  # 'emotion', or 'auto': the head's own classes when they are the corpus's native labels


@dataclass(frozen=True)
class Run:
    """One fold or left-out corpus: its name (a folder under the protocol workdir), test corpus and stages."""

    name: str
    corpus: str
    stages: tuple[Stage, ...]


def with_flags(argv: Sequence[str], **flags: str) -> list[str]:
    """argv with each --flag (underscores as dashes) set to value, any earlier occurrence removed."""
    out, names = [], {f"--{k.replace('_', '-')}" for k in flags}
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        elif a.split("=", 1)[0] not in names:
            out.append(a)
    for k, v in flags.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _check_train_args(argv: Sequence[str]) -> argparse.Namespace:
    """The trailing train.py arguments, parsed; the flags the protocol sets itself are refused."""
    from exhubert_jax.cli import train

    for flag in OWN_FLAGS:
        if any(a.split("=", 1)[0] == flag for a in argv):
            raise ProtocolError(f"{flag} after `--`: the protocol sets it for every run (see --help)")
    return train.parse_args(list(argv))


def _fold_number(name: str) -> tuple[int, str]:
    """Sort key of a fold dataset: its fold number, then its name."""
    m = re.search(r"-fold(\d+)(?:of\d+)?$", name)
    return (int(m[1]) if m else 0, name)


def fold_corpora(spec: str, data_dir: str | Path | None) -> list[str]:
    """Prepared fold datasets for --folds: exact names, or a prefix ('emodb-emobox' -> emodb-emobox-fold1, ...;
    'emodb' -> emodb-fold1of5, ...), in fold order."""
    from exhubert_jax.data.loading.resolve import data_root, prepared_names

    root = data_root(data_dir)
    prepared, names = prepared_names(root), []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        found = sorted((n for n in prepared if re.fullmatch(re.escape(item) + r"-fold\d+(of\d+)?", n)),
                       key=_fold_number) or ([item] if item in prepared else [])
        if not found:
            raise ProtocolError(f"--folds {item}: no prepared folds {item}-foldN under {root} (prepared there: "
                                f"{', '.join(prepared) or 'none'}); prepare them with `python -m "
                                "exhubert_jax.data.prepare --emobox DIR --emobox-root DIR` or `... --folds K`")
        counts = {re.sub(r"^.*-fold\d+", "", n) for n in found}
        if len(counts) > 1:
            raise ProtocolError(f"--folds {item}: folds of several k-folds are prepared ({', '.join(found)}); "
                                "name them one by one")
        names += found
    if len(names) < 2:
        raise ProtocolError(f"--folds {spec}: a protocol needs at least two folds, found {', '.join(names)}")
    return list(dict.fromkeys(names))


def fold_runs(folds: Sequence[str], argv: Sequence[str], workdir: Path, data_dir: str | Path | None) -> list[Run]:
    """One run per fold: the given train.py stage on the fold (its train/validation), tested on its test split."""
    args = _check_train_args(argv)
    if args.stage not in ("finetune", "transfer"):
        raise ProtocolError(f"--stage {args.stage} after `--`: a fold run trains, use --stage finetune or transfer")
    flag = "corpus" if args.stage == "transfer" else "corpora"
    extra = {"data_dir": str(data_dir)} if data_dir is not None else {}
    return [Run(f, f, (Stage("test", tuple(with_flags(argv, **{flag: f}, workdir=str(workdir / f), **extra)),
                             workdir / f, "auto"),)) for f in folds]


def loco_runs(corpora: Sequence[str], leave_out: Sequence[str], argv: Sequence[str], workdir: Path,
              data_dir: str | Path | None, transfer_steps: int | None) -> list[Run]:
    """One run per left-out corpus: fine-tune on the others, test zero-shot in the 6 classes; then optionally a
    transfer stage on the left-out corpus's train split (6-class head kept), tested again."""
    args = _check_train_args(argv)
    if args.stage != "finetune":
        raise ProtocolError(f"--stage {args.stage} after `--`: leave-one-corpus-out fine-tunes (--stage finetune)")
    extra = {"data_dir": str(data_dir)} if data_dir is not None else {}
    runs = []
    for left in leave_out:
        base = workdir / f"without-{left}"
        rest = ",".join(c for c in corpora if c != left)
        stages = [Stage("zero-shot", tuple(with_flags(argv, corpora=rest, workdir=str(base / "finetune"), **extra)),
                        base / "finetune", "emotion")]
        if transfer_steps:
            tr = with_flags(argv, stage="transfer", corpus=left, labels="emotion", init=str(base / "finetune" / "best"),
                            steps=str(transfer_steps), workdir=str(base / "transfer"), **extra)
            stages.append(Stage("transfer", tuple(tr), base / "transfer", "emotion"))
        runs.append(Run(f"without-{left}", left, tuple(stages)))
    return runs


def loco_corpora(corpora: str, leave_out: str, data_dir: str | Path | None) -> tuple[list[str], list[str]]:
    """(corpora, the ones left out in turn) for --corpora and --leave-out all|A,B."""
    from exhubert_jax.data.loading.resolve import resolve_corpora

    names = resolve_corpora(corpora, data_dir)
    if len(names) < 2:
        raise ProtocolError(f"--corpora {corpora}: leave-one-corpus-out needs at least two corpora")
    out = names if leave_out == "all" else [s.strip() for s in leave_out.split(",") if s.strip()]
    unknown = [c for c in out if c not in names]
    if unknown or not out:
        raise ProtocolError(f"--leave-out {leave_out}: {', '.join(unknown) or 'nothing'} not among --corpora "
                            f"({', '.join(names)})")
    return names, out


def evaluate_stage(stage: Stage, corpus: str, data_dir: str | Path | None, input_mode: str,
                   batch_size: int) -> dict[str, Any]:
    """The stage's checkpoint (best/, else final/) on the corpus's test split: UAR, and targets and predictions
    by class index with their class names (for the pooled UAR)."""
    from exhubert_jax.data.loading.dataset import open_prepared
    from exhubert_jax.evaluation import scoring as ev
    from exhubert_jax.pretrained import from_pretrained

    checkpoint = ev.resolve_checkpoint(stage.workdir)
    model, params = from_pretrained(checkpoint)
    prepared = open_prepared(corpus, data_dir)
    space = stage.label_space if stage.label_space != "auto" else ev.auto_label_space(model.config,
                                                                                    prepared.native_labels)
    r = ev.evaluate_corpus(model, params, prepared, "test", batch_size, data_dir, space, input_mode=input_mode,
                           progress=not quiet_stage(stage))
    return {"corpus": corpus, "checkpoint": str(checkpoint), "label_space": space, "uar": r["uar"], "n": r["n"],
            "class_names": r["class_names"], "targets": [u["label"] for u in r["utterances"]],
            "preds": [u["pred"] for u in r["utterances"]], "caveat": ev.checkpoint_caveat(checkpoint)}


def test_speakers_disjoint(corpus: str, data_dir: str | Path | None) -> bool | None:
    """Whether the prepared corpus's test speakers are disjoint from its train and validation speakers, as its
    prepare summary says (None: unknown)."""
    from exhubert_jax.data.loading.dataset import read_record
    from exhubert_jax.data.loading.resolve import data_root

    record = read_record(data_root(data_dir) / corpus) or {}
    return record.get("summary", {}).get("test_speakers_disjoint")


def _write_json(path: Path, doc: Any) -> None:
    """Write JSON atomically (a half-written result would look like a finished stage)."""
    write_text(path, json.dumps(doc, indent=1))


def run_stage(stage: Stage, corpus: str, data_dir: str | Path | None, input_mode: str, batch_size: int,
              say=print) -> dict[str, Any]:
    """Train (train.py resumes from the stage's checkpoints, or finishes at once when done) and evaluate; a
    stage with its evaluation written is not run again; quiet (train.py's --quiet), one line for the stage."""
    done = stage.workdir / RESULT
    if done.is_file():
        say(f"protocol: {stage.workdir} done ({stage.column} UAR {json.loads(done.read_text())['uar']:.4f})")
        return json.loads(done.read_text())
    quiet = quiet_stage(stage)
    if not quiet:
        say(f"protocol: {stage.workdir}: python train.py {' '.join(stage.argv)}")
    code = train_stage(stage, quiet)
    if code == 130:
        raise KeyboardInterrupt
    if code:
        raise ProtocolError(f"run {stage.workdir} failed (train.py exit {code}, message above); fix it and run the "
                            "same command: finished runs are kept")
    result = evaluate_stage(stage, corpus, data_dir, input_mode, batch_size)
    _write_json(done, result)
    say(f"protocol: {stage.workdir}: {stage.column} UAR {result['uar']:.4f} ({result['n']} utterances of {corpus})")
    return result


def quiet_stage(stage: Stage) -> bool:
    """Whether the stage's train.py arguments (a flag, or its --config file) ask for --quiet."""
    from exhubert_jax.cli import train

    return bool(train.parse_args(list(stage.argv)).quiet)


def train_stage(stage: Stage, quiet: bool) -> int:
    """train.py's exit code for the stage. Quiet, what it prints on stdout (its validation table, where its models
    went) is held back, so that a quiet protocol prints one line per run: all of it is printed when the run fails,
    and its `warning: ...` lines when it does not (its errors go to stderr as they come)."""
    from exhubert_jax.cli import train

    if not quiet:
        return train.main(list(stage.argv))
    held = io.StringIO()
    with contextlib.redirect_stdout(held):
        code = train.main(list(stage.argv))
    lines = held.getvalue().splitlines(keepends=True)
    if code != 130:
        sys.stdout.writelines(lines if code else [line for line in lines if line.startswith("warning:")])
    return code


def _plan(mode: str, runs: Sequence[Run]) -> dict[str, Any]:
    """What protocol.json records: the mode and every run's stages with their train.py arguments."""
    return {"mode": mode, "runs": [{"name": r.name, "corpus": r.corpus,
                                    "stages": [[s.column, list(s.argv)] for s in r.stages]} for r in runs]}


def _difference(before: dict[str, Any], plan: dict[str, Any]) -> str:
    """What differs between two recorded protocols, in words."""
    if before.get("mode") != plan["mode"]:
        return f"mode ({before.get('mode')}, now {plan['mode']})"
    old = {r["name"]: r for r in before.get("runs", [])}
    new = {r["name"]: r for r in plan["runs"]}
    if set(old) != set(new):
        return "runs (" + ", ".join(sorted(set(old) ^ set(new))) + ")"
    return next(f"the train.py arguments of run {n}" for n in new if new[n] != old[n])


def resumable_flags() -> dict[str, bool]:
    """{flag: whether it takes a value} of train.py's options that a run may change when it resumes (--quiet,
    --eval-every, --keep, ...: TrainOptions' resumable fields)."""
    from exhubert_jax.cli import train
    from exhubert_jax.training.options import TrainOptions, resumable

    names = resumable(TrainOptions)
    return {flag: action.nargs != 0 for action in train.build_parser()._actions if action.dest in names
            for flag in action.option_strings}


def _comparable(plan: dict[str, Any]) -> dict[str, Any]:
    """A recorded protocol without the flags a resumed run may change, so that `-- --quiet` added or dropped (or
    another --eval-every) resumes the same protocol."""
    flags = resumable_flags()

    def kept(argv: Sequence[str]) -> list[str]:
        out, skip = [], False
        for a in argv:
            if skip:
                skip = False
            elif a in flags:
                skip = flags[a]
            elif a.split("=", 1)[0] not in flags:
                out.append(a)
        return out

    return {**plan, "runs": [{**r, "stages": [[column, kept(argv)] for column, argv in r.get("stages", [])]}
                             for r in plan.get("runs", [])]}


def check_plan(workdir: Path, plan: dict[str, Any]) -> None:
    """Record the protocol in WORKDIR/protocol.json; a workdir that ran another protocol is refused (flags a resumed
    run may change, such as --quiet, do not count)."""
    path = workdir / PLAN
    if path.is_file():
        before = json.loads(path.read_text())
        if _comparable(before) != _comparable(plan):
            raise ProtocolError(f"{path}: this workdir holds another protocol (it differs in "
                                f"{_difference(_comparable(before), _comparable(plan))}); resume it with the command "
                                "that started it, or use another --workdir")
        return
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json(path, plan)


def run_protocol(mode: str, runs: Sequence[Run], workdir: Path, data_dir: str | Path | None = None,
                 input_mode: str = "masked", batch_size: int = 8, say=print) -> dict[str, Any]:
    """Run every stage of every run in order (skipping those already evaluated), then write and return the
    summary: WORKDIR/results.json and results.md."""
    from exhubert_jax.protocols import summary as ps

    workdir = Path(workdir)
    check_plan(workdir, _plan(mode, runs))
    results = []
    for run in runs:
        try:
            evaluations = {s.column: run_stage(s, run.corpus, data_dir, input_mode, batch_size, say)
                           for s in run.stages}
        except KeyboardInterrupt as e:
            inner = f" ({e})" if isinstance(e, Interrupted) and str(e) else ""
            raise Interrupted(f"protocol run {run.name}{inner}; the same command resumes at this run") from None
        results.append({"run": run.name, "corpus": run.corpus, "evaluations": evaluations,
                        "test_speakers_disjoint": test_speakers_disjoint(run.corpus, data_dir)})
    columns = [s.column for s in runs[0].stages]
    summary = ps.summarize(results, columns)
    what = {"folds": "fold", "sweep": "cell"}.get(mode, "left out")
    caveats = {e["caveat"] for r in results for e in r["evaluations"].values() if e.get("caveat")}
    text = ps.table(results, columns, summary, what) + "".join(f"\n\n{c}" for c in sorted(caveats))
    doc = {"mode": mode, "input": input_mode, "columns": columns, "summary": summary, "table": text,
           "runs": [{**r, "evaluations": {c: {k: v for k, v in e.items() if k not in ("targets", "preds")}
                                          for c, e in r["evaluations"].items()}} for r in results]}
    _write_json(workdir / "results.json", {**doc, "utterances": results})
    heading = f"Protocol `{mode}`, test splits, input `{input_mode}`, metrics in % (kappa as it is)"
    (workdir / "results.md").write_text(f"{heading}\n\n{text}\n")
    return doc
