"""evaluate.py --corpus C --degrade SPEC ...: one checkpoint on the prepared split under each degradation condition
(clean always first), written to OUT/<corpora>-<split>-masked-<labels>-robustness/ (robustness.md, robustness.json,
robustness_<corpus>.png) and listed in OUT's index; see docs/robustness.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def degrade_specs(texts) -> tuple[str, ...]:
    """--degrade's parse: the specs in canonical form; a DegradeError naming the flag and the spec that fails."""
    from exhubert_jax.evaluation.degradation import checked_specs

    return checked_specs(texts)


def holds_audio(directory: str) -> bool:
    """--noise-dir / --rir-dir's check: a folder holding audio files."""
    from exhubert_jax.data.banks import holds_audio as holds

    return holds(directory)


def check_degrade(args, specs: list[str]) -> None:
    """EvaluationError for what --degrade cannot run with, before any model loads; DegradeError for a folder flag
    without its condition."""
    from exhubert_jax.evaluation.degradation import conditions
    from exhubert_jax.evaluation.scoring import EvaluationError

    if not args.degrade:
        for flag, value in (("--noise-dir", args.noise_dir), ("--rir-dir", args.rir_dir)):
            if value is not None:
                raise EvaluationError(f"{flag} {value} applies to --degrade only")
        return
    clash = [flag for flag, on in (("--audio", args.audio is not None), ("--calibrate", args.calibrate),
                                   ("--baseline", args.baseline is not None), ("--timeline", args.timeline),
                                   ("--input card", args.input == "card"), ("--by", args.by is not None),
                                   ("several --checkpoint runs", len(specs) > 1)) if on]
    if clash:
        raise EvaluationError(f"--degrade scores one checkpoint on --corpus (masked input); it cannot run with "
                              f"{', '.join(clash)}")
    conditions(args.degrade, args.noise_dir, args.rir_dir)


def run_degraded(args, model, params, checkpoint: Path, label_spaces, warn_caveat) -> int:
    """Score every corpus under every condition; write the folder, list it in the index; print the tables (or one
    JSON document). label_spaces and warn_caveat are evaluate_runs's (the label space of each corpus, refusing a
    head that does not fit; the warning of a split with a caveat)."""
    from exhubert_jax.data.loading.dataset import open_prepared
    from exhubert_jax.data.loading.devices import make_mesh
    from exhubert_jax.data.loading.resolve import resolve_corpora
    from exhubert_jax.evaluation import output_folders as eval_outputs
    from exhubert_jax.evaluation import reports as reporting
    from exhubert_jax.evaluation import robustness
    from exhubert_jax.evaluation.degradation import STRENGTHS, DegradedPredictor, conditions
    from exhubert_jax.evaluation.output_folders import eval_root
    from exhubert_jax.evaluation.scoring import checkpoint_caveat
    from exhubert_jax.process.interrupts import held
    from exhubert_jax.process.output_dirs import check_writable

    wanted = conditions(args.degrade, args.noise_dir, args.rir_dir)
    names = resolve_corpora(args.corpus, args.data_dir)
    spaces = label_spaces(args, model, checkpoint, names)
    root = check_writable(eval_root(args.out, args.checkpoint, checkpoint), "--out")  # before any work
    banks = robustness.load_banks(args.noise_dir, args.rir_dir, args.seed)
    predictor = DegradedPredictor(model, make_mesh())
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    name = eval_outputs.run_name(args.corpus, args.split, "masked", spaces.values()) + "-robustness"
    axes = {kind: label for kind, (_, label) in STRENGTHS.items()}
    per_corpus, tables = {}, []
    with robustness.host_pool(any(c.host for c in wanted)) as pool, eval_outputs.run_folder(root, name) as tmp:
        for corpus in names:
            results = robustness.score_conditions(
                model, params, open_prepared(corpus, args.data_dir), args.split, wanted, batch_size=args.batch_size,
                label_space=spaces[corpus], predictor=predictor, seed=args.seed, n_resamples=args.bootstrap,
                banks=banks, pool=pool, say=say)
            warn_caveat(results[0])
            tag = Path(corpus).name
            reporting.plot_robustness(results, tmp / f"robustness_{tag}.png", axes=axes,
                                      title=f"{corpus} ({args.split}): UAR under degradation")
            per_corpus[corpus] = results
            tables.append(f"## {corpus} ({args.split})\n\n{reporting.robustness_table(results)}")
        caveat = checkpoint_caveat(checkpoint)
        text = (f"Checkpoint `{checkpoint}`, split `{args.split}`, seed {args.seed}: UAR and the other metrics under "
                f"each condition; Δ and p from the paired test against clean on the same utterances and resamples "
                f"(Holm over the conditions of a corpus; * p < 0.05)\n\n" + "\n".join(tables)
                + (f"\n{caveat}\n" if caveat else ""))
        doc = {"checkpoint": str(checkpoint), "split": args.split, "input": "masked",
               "label_space": eval_outputs.labels_tag(spaces.values()), "seed": args.seed,
               "conditions": [c.spec for c in wanted], "caveat": caveat,
               "corpora": {c: [robustness.summary(r) for r in rs] for c, rs in per_corpus.items()}}
        (tmp / "robustness.json").write_text(json.dumps(doc, indent=1))
        (tmp / "robustness.md").write_text(text)
        files = sorted(p.name for p in tmp.iterdir())
    clean = [rs[0] for rs in per_corpus.values()]
    with held():  # Ctrl-C waits until the index lists the folder just written
        index = eval_outputs.record(root, {
            "corpora": names, "split": args.split, "input": "masked", "labels": doc["label_space"],
            "checkpoint": str(checkpoint), "temperature": None, "mean_uar": eval_outputs.mean_uar(clean),
            "means": eval_outputs.means(clean), "path": name, "main": "robustness.md", "files": files})
    out = root / name
    if args.json:
        print(json.dumps({**doc, "table": text, "out": str(out), "index": str(index)}))
    else:
        print(text + f"\nwrote {out}/: robustness.md, robustness.json, robustness_<corpus>.png for "
              f"{', '.join(names)}; every evaluation is listed in {index}")
    return 0
