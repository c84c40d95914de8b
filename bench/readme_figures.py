"""The demo figures the README quotes, measured afresh on this machine (re-run it after every change).

    python bench/readme_figures.py                    # every part: about 20 min on a busy 2-core machine
    python bench/readme_figures.py --parts masked,card --seeds 0,1,2

First the training (train.py --stage finetune --workdir W, and W-seedS with --seed S for each other seed of
--seeds: best and final validation UAR; a finished run is resumed and ends at once), then the parts, each the
README's own command: masked and card (evaluate.py --corpus demo, --input card: the range over the seeds, then each
seed), paired (the seed-1 run compared against W), calibrate (--calibrate, on a copy of W so that W's own
evaluations stay uncalibrated), probe (exhubert_jax.inference.embedding_files --probe logreg on demo-a) and protocol
(the 2-fold protocol of demo-a and leave-one-corpus-out, in W-protocol/ with data of its own; most of the time).
Finished runs are reused, so a second call takes seconds. The figures go to stdout, the commands' own progress to
stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = ("masked", "card", "paired", "calibrate", "probe", "protocol")


def machine_line() -> str:
    """The CPU, its cores and the JAX version: what the figures were measured on."""
    import jax

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return f"machine: {cpu}, {os.cpu_count()} cores; jax {jax.__version__}"


def quiet(fn, argv: list[str], echo: bool = False) -> tuple[str, str]:
    """Run a CLI's main(argv) in this process: (its stdout, its stderr); the stderr is passed on to ours, and the
    stdout too with `echo` or when the command fails."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = fn(argv)
    sys.stderr.write(err.getvalue() + (out.getvalue() if echo or code else ""))
    if code:
        raise SystemExit(f"{fn.__module__}.main({' '.join(argv)}) exited {code}")
    return out.getvalue(), err.getvalue()


def line_starting(text: str, start: str) -> str:
    """The first line of `text` that starts with `start`."""
    return next(line for line in text.splitlines() if line.startswith(start))


def uars(doc: dict) -> str:
    """'mean 83.3 % (demo-a 83.3, demo-b 77.8, demo-c 88.9)' of an evaluate.py --json document."""
    each = {r["corpus"]: 100 * r["uar"] for r in doc["results"]}
    return (f"mean {sum(each.values()) / len(each):.1f} % ("
            + ", ".join(f"{name} {value:.1f}" for name, value in each.items()) + ")")


def training(args, workdir: Path, seed: int = 0) -> str:
    """Train (or finish) the demo run in `workdir`: its best and final mean validation UAR."""
    import train

    argv = ["--stage", "finetune", "--workdir", str(workdir), "--seed", str(seed), *args.train_args]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    quiet(train.main, argv, echo=True)
    best = json.loads((workdir / "best.json").read_text())
    final = json.loads((workdir / "final.json").read_text())
    return (f"training ({workdir}, seed {seed}): best mean validation UAR {best['mean']:.3f} at step {best['step']}, "
            f"final {final['mean']:.3f} at step {final['step']}")


def evaluation(args, checkpoint: str, *extra: str) -> tuple[dict, str]:
    """evaluate.py --corpus demo --json on `checkpoint` with `extra` flags: (its JSON document, its stderr)."""
    import evaluate

    argv = ["--corpus", "demo", "--checkpoint", checkpoint, "--json", *extra]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    out, err = quiet(evaluate.main, argv)
    return json.loads(out), err


def probe(args, workdir: Path) -> str:
    """The probe line of exhubert_jax.inference.embedding_files --probe logreg on demo-a."""
    from exhubert_jax.inference import embedding_files as embed

    with tempfile.TemporaryDirectory() as out:
        argv = ["--checkpoint", str(workdir), "--corpus", "demo-a", "--probe", "logreg", "--out", out]
        if args.data_dir:
            argv += ["--data-dir", args.data_dir]
        return line_starting(quiet(embed.main, argv)[1], "probe:")


def calibrated(args, workdir: Path) -> str:
    """--calibrate on a copy of the run: the fitted-temperature line and the before/after table."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / workdir.name
        shutil.copytree(workdir / "best", copy / "best")
        shutil.copy(workdir / "run.json", copy / "run.json")
        doc, err = evaluation(args, str(copy), "--calibrate")
    table = doc["table"]
    table = table[table.index("| Corpus (T = 1"):].split("\n\n")[0]
    return f"{line_starting(err, 'fitted temperature')}\n\n{table}"


def protocols(args, workdir: Path) -> str:
    """The README's demo protocol commands: the table of demo-a's 2 folds, then the leave-one-corpus-out table."""
    from exhubert_jax.data.demo import synthetic
    from exhubert_jax.data.prepare import corpus as prepare
    from exhubert_jax.protocols import runner as protocol

    root = workdir.with_name(f"{workdir.name}-protocol")  # its own data: preparing W's corpora again stops W resuming
    data, sources = root / "data" / "prepared", root / "data" / "demo_sources"
    quiet(synthetic.main, ["--out", str(sources), "--prepare", str(data)])
    quiet(prepare.main, ["--corpus", "demo-a", "--manifest", str(sources / "demo-a" / "manifest.csv"), "--folds", "2",
                         "--out", str(data)])
    runs = (["folds", "--folds", "demo-a", "--workdir", str(root / "demo-a-2fold"), "--data-dir", str(data), "--",
             "--stage", "finetune", "--quiet"],
            ["loco", "--corpora", "demo", "--workdir", str(root / "demo-loco"), "--data-dir", str(data),
             "--transfer-steps", "100", "--", "--steps", "200", "--quiet"])
    tables = []
    for argv in runs:  # the protocol's table ends its stdout, after the training runs' own output
        printed = quiet(protocol.main, argv)[0].split("\n\nwrote ")[0]
        tables.append(printed[list(re.finditer(r"^\| (fold|left out) \|", printed, re.M))[-1].start():].strip())
    return "\n\n".join(tables)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/demo", help="the demo run (trained here unless finished)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--data-dir", default=None, help="prepared data (default as train.py's)")
    p.add_argument("--seeds", default="0,1", help="training seeds whose test UAR is given as a range (seed 0 trains "
                   "in --workdir, seed S in WORKDIR-seedS); the other parts use seed 0's run")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                   help="further train.py flags, e.g. --steps 4 for a quick check of this script (must come last)")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    try:
        args.seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()} | {0})
    except ValueError:
        p.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    unknown = [s for s in args.parts if s not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return args


def main(argv=None) -> int:
    """Print the README's demo figures, part by part."""
    args = parse_args(argv)
    workdir = Path(args.workdir)
    print(machine_line(), flush=True)
    runs = {seed: workdir if seed == 0 else workdir.with_name(f"{workdir.name}-seed{seed}") for seed in args.seeds}
    for seed, run in runs.items():  # every other part needs the trained runs
        print(training(args, run, seed=seed), flush=True)
    for part, extra in (("masked", ()), ("card", ("--input", "card"))):
        if part in args.parts:
            docs = {seed: evaluation(args, str(run), *extra)[0] for seed, run in runs.items()}
            means = [100 * sum(r["uar"] for r in d["results"]) / len(d["results"]) for d in docs.values()]
            print(f"test UAR, --input {part}, seeds {', '.join(map(str, runs))}: {min(means):.1f}-{max(means):.1f} %"
                  + "".join(f"\n  seed {seed}: {uars(d)}" for seed, d in docs.items()), flush=True)
            if part == "masked":
                print(f"\n{docs[args.seeds[0]]['table'].strip()}", flush=True)
    if "paired" in args.parts:
        seed1 = workdir.with_name(f"{workdir.name}-seed1")
        if 1 not in runs:
            print(training(args, seed1, seed=1), flush=True)
        doc = evaluation(args, f"{workdir},{seed1}", "--baseline", str(workdir))[0]
        print(doc["table"].strip(), flush=True)
    if "calibrate" in args.parts:
        print(calibrated(args, workdir), flush=True)
    if "probe" in args.parts:
        print(probe(args, workdir), flush=True)
    if "protocol" in args.parts:
        print(protocols(args, workdir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
