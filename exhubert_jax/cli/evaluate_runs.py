"""The evaluations behind evaluate.py: per-corpus tables and files, a Table-2 comparison of several checkpoints with
paired tests against a baseline, predictions for audio files, and timelines; `run(args)` takes evaluate.py's parsed
options (cli.evaluate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from exhubert_jax.process.interrupts import held
from exhubert_jax.evaluation.output_folders import eval_root
from exhubert_jax.process.output_dirs import check_writable, make_output_dir


def card_protocol(args):
    """The card protocol --card-config names (None: the default), refused without --input card."""
    if args.card_config is None:
        return None
    from exhubert_jax.data.loading.input_protocol import CardProtocol
    from exhubert_jax.evaluation.scoring import EvaluationError

    if args.input != "card":
        raise EvaluationError("--card-config applies to --input card only; add --input card or drop it")
    return CardProtocol.from_file(args.card_config)


def label_space_for(args, model, corpus) -> str:
    """--labels, or for auto the space the model's head was trained on."""
    from exhubert_jax.evaluation import scoring as ev

    return args.labels if args.labels != "auto" else ev.auto_label_space(model.config, corpus.native_labels)


def run_corpora(args, model, params, checkpoint: Path, predictor) -> int:
    """Evaluate each corpus; write its confusion and reliability PNGs, confusion JSON, results.json/.md into the
    evaluation's own folder (eval_outputs), list it in the index; print the tables (or JSON)."""
    from exhubert_jax.data.loading.resolve import resolve_corpora
    from exhubert_jax.evaluation import output_folders as eval_outputs, scoring as ev, statistics as analysis

    names = resolve_corpora(args.corpus, args.data_dir)
    spaces = label_spaces(args, model, checkpoint, names)

    def evaluate(name: str, split: str) -> dict:
        """evaluate_corpus of one corpus and split with this run's model and options."""
        if not args.quiet:
            print(f"evaluating {name} ({split})...", file=sys.stderr)
        return warn_caveat(ev.evaluate_corpus(model, params, name, split, args.batch_size, args.data_dir,
                                              spaces[name], predictor, input_mode=args.input,
                                              card=card_protocol(args), progress=not args.quiet))

    root = check_writable(eval_root(args.out, args.checkpoint, checkpoint), "--out")  # before any work
    temperature = checkpoint_temperature(args, checkpoint, [evaluate(n, "validation") for n in names]
                                         if args.calibrate else [])
    name = eval_outputs.run_name(args.corpus, args.split, args.input, spaces.values())
    results, samples = [], []
    classes = bool(model.config.num_labels)  # a dimensional-only model has no probabilities to calibrate
    with eval_outputs.run_folder(root, name) as tmp:
        for corpus in names:
            r = evaluate(corpus, args.split)
            samples.append(analysis.add_metric_intervals(r, args.bootstrap, args.seed))
            analysis.add_dimensional_intervals(r, args.bootstrap, args.seed)
            reliability = analysis.add_calibration(r, temperature["temperature"] if temperature else 1.0,
                                                   show_before=args.calibrate) if classes else None
            write_corpus_files(args, checkpoint, tmp, r, reliability)
            results.append(r)
        averages = analysis.average_intervals(samples)
        doc = {"checkpoint": str(checkpoint), "corpora": names, "split": args.split, "input": args.input,
               "label_space": eval_outputs.labels_tag(spaces.values()), "caveat": ev.checkpoint_caveat(checkpoint),
               "average_uar_interval": averages and averages["uar"], "average_intervals": averages,
               "temperature": temperature, "mean_ccc": analysis.mean_ccc(results), "results": results}
        if args.by:
            doc["groups"] = group_results(args, results)
        text = results_text(args, checkpoint, doc, classes)
        (tmp / "results.json").write_text(json.dumps(doc))
        (tmp / "results.md").write_text(text)
        files = sorted(p.name for p in tmp.iterdir())
    with held():  # Ctrl-C waits until the index lists the folder just written
        index = eval_outputs.record(root, {
            "corpora": names, "split": args.split, "input": args.input, "labels": doc["label_space"],
            "checkpoint": str(checkpoint), "temperature": temperature and temperature["temperature"],
            "mean_uar": eval_outputs.mean_uar(results), "means": eval_outputs.means(results), "path": name,
            "main": "results.md", "files": files})
    out = root / name
    if args.json:
        print(json.dumps({**doc, "table": text, "out": str(out), "index": str(index)}))
    else:
        figures = ("reliability_<corpus>.png" if classes else "") + \
            (", scatter_<corpus>.png" if model.config.dimensions else "")
        print(text + f"wrote {out}/: results.md, results.json, confusion_<corpus>.png/.json, "
              f"{figures.strip(', ')} for {', '.join(names)}; every evaluation is listed in {index}")
    return 0


def label_spaces(args, model, checkpoint: Path, names: list[str]) -> dict[str, str]:
    """{corpus: the label space it is scored in}, after refusing, before any work, every head/label mismatch and a
    --calibrate that cannot run (no classifier, or a corpus without a validation split)."""
    from exhubert_jax.data.loading.dataset import open_prepared
    from exhubert_jax.evaluation import scoring as ev

    if args.calibrate and not model.config.num_labels:
        raise ev.EvaluationError(f"--calibrate fits a softmax temperature; {checkpoint} is a dimensional-only model "
                                 "(no classifier), so there is none to fit")
    spaces = {}
    for name in names:
        corpus = open_prepared(name, args.data_dir)
        spaces[name] = label_space_for(args, model, corpus)
        ev.check_label_space(model.config, spaces[name], corpus.native_labels, corpus.name)
        if args.calibrate and "validation" not in corpus.splits:
            raise ev.EvaluationError(f"--calibrate: {name} has no validation split (splits: {', '.join(corpus.splits)})"
                                     "; the temperature is fitted on validation data only, never on the test split")
    return spaces


def group_results(args, results: list[dict]) -> dict:
    """--by's per-group results of the evaluated corpora (evaluation.groups.by_groups); its warnings on stderr."""
    from exhubert_jax.evaluation import groups

    doc = groups.by_groups(results, groups.parse_by(args.by), args.bootstrap, args.seed)
    for line in doc["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    return doc


def warn_caveat(result: dict) -> dict:
    """Print the warning of a split whose UAR has a caveat (one class, too few examples of one); the result."""
    if result.get("caveat"):
        print(f"warning: {result['corpus']}, {result['split']} split: {result['caveat']}", file=sys.stderr)
    return result


def results_text(args, checkpoint: Path, doc: dict, classes: bool) -> str:
    """results.md: the dimensional table, the table of every registered metric with its intervals, calibration,
    the soft-label scores where the splits have label distributions, and the demo caveat."""
    from exhubert_jax.evaluation import reports as reporting, scoring as ev

    results, temperature = doc["results"], doc["temperature"]
    mapped = f"\nClasses of the dimensional model: {ev.CLASSES_FROM_DIMS}.\n" if not classes else ""
    dims = reporting.dimensional_table(results)
    calibration = (f"\n{calibration_heading(checkpoint, temperature)}\n\n{reporting.calibration_table(results)}"
                   if classes else "")
    soft = reporting.soft_label_table(results)
    soft = f"\nAgainst the annotators' label distributions (softmax of the logits at T = 1)\n\n{soft}" if soft else ""
    return (f"Checkpoint `{checkpoint}`, split `{args.split}`, input `{args.input}`\n\n"
            + (f"{dims}\n" if dims else "")
            + reporting.markdown_table(results, doc["average_uar_interval"], doc.get("average_intervals"))
            + f"{mapped}{calibration}{soft}"
            + (f"\n{doc['caveat']}\n" if doc["caveat"] else "")
            + (f"\n{reporting.group_tables(doc['groups'])}" if doc.get("groups") else ""))


def checkpoint_temperature(args, checkpoint: Path, validation: list[dict]) -> dict | None:
    """temperature.json's document: fitted now on the validation results when --calibrate gave them, else the
    stored one when it applies to these weights (a warning says why a stored one is ignored), else None."""
    from exhubert_jax.evaluation import calibration as cal, statistics as analysis

    if validation:
        doc = analysis.fit_validation_temperature(checkpoint, validation)
        before, after = doc["validation_nll"]["before"], doc["validation_nll"]["after"]
        print(f"fitted temperature {doc['temperature']:.3f} on the validation split of "
              f"{', '.join(doc['fitted_on'])} ({sum(doc['fitted_on'].values())} utterances; NLL {before:.3f} -> "
              f"{after:.3f}); wrote {checkpoint / cal.TEMPERATURE_JSON}", file=sys.stderr)
        return doc
    doc, why = cal.load_temperature(checkpoint)
    if why:
        print(f"warning: {why}", file=sys.stderr)
    return doc


def calibration_heading(checkpoint: Path, temperature: dict | None) -> str:
    """The line above the calibration table: which temperature the probabilities are at."""
    if temperature is None:
        return ("Calibration of softmax(logits), 15 equal-width confidence bins (no temperature.json: "
                "`--calibrate` fits one on the validation split)")
    return (f"Calibration at temperature {temperature['temperature']:.3f} ({checkpoint}/temperature.json, fitted on "
            f"the validation split of {', '.join(temperature['fitted_on'])}), 15 equal-width confidence bins")


def write_corpus_files(args, checkpoint: Path, out: Path, r: dict, reliability: dict) -> None:
    """confusion_<corpus>.png/.json, reliability_<corpus>.png (models with classes) and scatter_<corpus>.png (models
    with dimensions) of one result."""
    from exhubert_jax.evaluation import reports as reporting, scoring as ev, statistics as analysis

    tag = Path(r["corpus"]).name
    reporting.plot_confusion(r["confusion_matrix"], ev.plot_class_names(r), out / f"confusion_{tag}.png",
                             title=f"{r['corpus']} ({args.split}): UAR {100 * r['uar']:.1f}%")
    if reliability is not None:
        c = r["calibration"]
        reporting.plot_reliability(reliability, out / f"reliability_{tag}.png",
                                   title=f"{r['corpus']} ({args.split}), T = {c['temperature']:.2f}: ECE "
                                         f"{100 * c['ece']:.1f}%, MCE {100 * c['mce']:.1f}%")
    if r.get("dimensional"):
        truth, pred, names = analysis.result_values(r)
        reporting.plot_scatter(truth, pred, names, out / f"scatter_{tag}.png",
                               title=f"{r['corpus']} ({args.split}): mean CCC {r['dimensional']['mean_ccc']:.3f}")
    summary = {k: v for k, v in r.items() if k != "utterances"}
    (out / f"confusion_{tag}.json").write_text(json.dumps({"checkpoint": str(checkpoint), **summary}, indent=2))


def run_comparison(args, specs: list[str], predictor_for) -> int:
    """Table 2: one column per checkpoint, one row per corpus, the average over corpora and trainable parameters,
    for every registered metric (UAR first); intervals, and with --baseline the paired test of every column
    against it, per metric."""
    if args.out:
        check_writable(args.out, "--out")  # before any work
    full, samples, trainable, cells = comparison_cells(args, specs, predictor_for)
    report = comparison_report(full, samples, trainable, args.baseline, args.bootstrap, args.seed)
    table = report.pop("table")
    doc = {"split": args.split, "input": args.input, "columns": specs, "cells": cells, "baseline": args.baseline,
           **report, "trainable_parameters": trainable, "table": table}
    if args.out:
        write_comparison(args, doc, table)
    print(json.dumps(doc) if args.json else f"Performance on the {args.split} split\n\n{table}")
    return 0


def comparison_report(full: dict, samples: dict, trainable: dict, baseline: str | None, n_resamples: int,
                      seed: int) -> dict:
    """{average_uar_intervals, average_intervals, paired, table} of evaluated cells (comparison_cells's `full`,
    `samples`, `trainable`): a Table-2 block per registered metric, its cells with their intervals and, with a
    baseline, marked where the paired test (Holm-corrected, per metric) finds a difference; then the paired
    tables. `average_intervals` maps column -> metric -> interval of the average over corpora."""
    from exhubert_jax.evaluation import reports as reporting, statistics as analysis
    from exhubert_jax.evaluation.metrics import METRICS

    specs = list(full)
    averages = {spec: analysis.average_intervals(samples[spec]) or {} for spec in specs}
    values = {k: {spec: {name: r.get(k) for name, r in full[spec].items()} for spec in specs} for k in METRICS}
    intervals = {k: {spec: {**{name: (r.get("intervals") or {}).get(k) for name, r in full[spec].items()},
                            "average": averages[spec].get(k)} for spec in specs} for k in METRICS}
    rows = analysis.compare_to_baseline(full, baseline, n_resamples, seed) if baseline else []
    marks = {k: {r["column"]: {} for r in rows} for k in METRICS}
    for r in rows:
        for k, e in r.get("metrics", {}).items():
            if e.get("significant") and k in marks:
                marks[k][r["column"]][r["corpus"]] = " *"
    table = reporting.comparison_tables(values, trainable, intervals, marks)
    if baseline:
        table += (f"\n\\* differs from the baseline {baseline} at p < 0.05 after Holm's correction over the "
                  f"{len(full[baseline])} corpora (each metric on its own).\n\n"
                  + reporting.paired_table(rows, baseline))
    return {"average_uar_intervals": {s: averages[s].get("uar") for s in specs},
            "average_intervals": {s: averages[s] or None for s in specs}, "paired": rows, "table": table}


def comparison_cell(checkpoint, column: str, corpus: str, label_space: str, r: dict) -> dict:
    """One JSON cell of the comparison: checkpoint, column, corpus, label space, every registered metric (None
    where the result has none), n and the intervals."""
    from exhubert_jax.evaluation.metrics import METRICS

    return {"checkpoint": str(checkpoint), "column": column, "corpus": corpus, "label_space": label_space,
            **{k: r.get(k) for k in METRICS}, "n": r["n"], "intervals": r.get("intervals")}


def write_comparison(args, doc: dict, table: str) -> None:
    """comparison.json/.md into OUT/<corpora>-<split>-<input>-<labels>/, listed in OUT's index."""
    from exhubert_jax.evaluation import output_folders as eval_outputs

    corpora = list(dict.fromkeys(c["corpus"] for c in doc["cells"]))
    labels = [c["label_space"] for c in doc["cells"]]
    name = eval_outputs.run_name(args.corpus, args.split, args.input, labels)
    with eval_outputs.run_folder(args.out, name) as tmp:
        (tmp / "comparison.json").write_text(json.dumps(doc, indent=2))
        (tmp / "comparison.md").write_text(table)
    eval_outputs.record(args.out, {
        "corpora": corpora, "split": args.split, "input": args.input, "labels": eval_outputs.labels_tag(labels),
        "checkpoint": ", ".join(doc["columns"]), "temperature": None, "mean_uar": None, "means": None,
        "path": name,
        "main": "comparison.md", "files": ["comparison.json", "comparison.md"]})
    print(f"wrote {Path(args.out) / name}/: comparison.md, comparison.json", file=sys.stderr)


def comparison_cells(args, specs: list[str], predictor_for) -> tuple[dict, dict, dict, list]:
    """(column -> corpus -> evaluate_corpus result with intervals, column -> its corpora's resampled values
    ({metric: (B,)} or None each), column -> trainable parameters, JSON cells with every registered metric)."""
    from exhubert_jax.data.loading.dataset import open_prepared
    from exhubert_jax.data.loading.resolve import resolve_corpora
    from exhubert_jax.evaluation import scoring as ev, statistics as analysis

    names = resolve_corpora(args.corpus, args.data_dir)
    full, samples, trainable, cells = {}, {}, {}, []
    for spec in specs:
        full[spec], samples[spec] = {}, []
        for name in names:
            checkpoint = ev.resolve_checkpoint(ev.per_corpus_run(spec, name))
            model, params, predictor = predictor_for(checkpoint)
            corpus = open_prepared(name, args.data_dir)
            space = label_space_for(args, model, corpus)
            if not args.quiet:
                print(f"evaluating {name} ({args.split}) with {checkpoint}...", file=sys.stderr)
            r = warn_caveat(ev.evaluate_corpus(model, params, corpus, args.split, args.batch_size, args.data_dir,
                                               space, predictor, input_mode=args.input, card=card_protocol(args),
                                               progress=not args.quiet))
            samples[spec].append(analysis.add_metric_intervals(r, args.bootstrap, args.seed))
            full[spec][name] = r
            trainable.setdefault(spec, ev.trainable_parameters(checkpoint, model, params))
            cells.append(comparison_cell(checkpoint, spec, name, space, r))
    return full, samples, trainable, cells


def run_audio(args, model, params, checkpoint: Path, predictor) -> int:
    """Predict files; print a table (or JSON); exit 1 when any file failed."""
    from exhubert_jax.evaluation import reports as reporting, scoring as ev

    temperature = checkpoint_temperature(args, checkpoint, [])
    t = temperature["temperature"] if temperature else 1.0
    results = ev.predict_audio(model, params, args.audio, args.chunk_seconds, args.batch_size, predictor, t,
                               progress=not args.quiet)
    names = ev.model_class_names(model.config)
    caveat = ev.checkpoint_caveat(checkpoint)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    for r in results:
        if "warning" in r:
            print(f"warning: {r['file']}: {r['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), "caveat": caveat, "temperature": temperature,
                          "class_names": names, "files": results}))
    else:
        scaled = f", probabilities at temperature {t:.3f} from its temperature.json" if temperature else ""
        print(f"Checkpoint `{checkpoint}`{scaled}\n\n{reporting.audio_table(results, names, model.config.dimensions)}")
        if caveat:
            print(caveat)
    return 1 if failed else 0


def check_options(args, specs: list[str]) -> None:
    """EvaluationError for option combinations that cannot run, before any model is loaded."""
    from exhubert_jax.evaluation.scoring import EvaluationError

    if args.bootstrap < 0:
        raise EvaluationError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {args.bootstrap}")
    if args.calibrate and (args.corpus is None or len(specs) != 1):
        raise EvaluationError("--calibrate needs --corpus and exactly one --checkpoint run")
    if args.calibrate and args.split == "validation":
        raise EvaluationError("--calibrate fits the temperature on the validation split, so it cannot also be "
                              "evaluated there: use --split test")
    if args.by is not None:
        from exhubert_jax.evaluation.groups import parse_by

        parse_by(args.by)
        if args.corpus is None or len(specs) != 1:
            raise EvaluationError("--by needs --corpus and exactly one --checkpoint run")
    if args.baseline is None:
        return
    if args.corpus is None or len(specs) < 2:
        raise EvaluationError("--baseline needs --corpus and at least two runs in --checkpoint A,B")
    if args.baseline.strip() not in specs:
        raise EvaluationError(f"--baseline {args.baseline} is not one of the --checkpoint runs ({', '.join(specs)})")
    if args.bootstrap == 0:
        raise EvaluationError("--baseline needs resamples for its paired test: --bootstrap N with N > 0")
    args.baseline = args.baseline.strip()


def run_timeline(args, model, params, checkpoint: Path, predictor) -> int:
    """Write each file's timeline into the folder of its settings (OUT/timeline/fixed-window3s-hop1s/, .../vad/);
    print one line per file (or JSON); exit 1 when any file failed."""
    from exhubert_jax.evaluation import scoring as ev
    from exhubert_jax.evaluation.output_folders import timeline_name
    from exhubert_jax.inference.timeline import chunk_seconds_for, timelines

    if not model.config.num_labels:
        raise ev.EvaluationError(f"--timeline shows class probabilities; {checkpoint} is a dimensional-only model "
                                 "(no classifier): use --audio without --timeline for its arousal/valence/dominance")
    settings = timeline_name(args.segments, args.window, args.hop)
    out = make_output_dir(eval_root(args.out, args.checkpoint, checkpoint) / "timeline" / settings, "--out")
    results = timelines(model, params, args.audio, out, window_s=args.window, hop_s=args.hop, segments=args.segments,
                        batch_size=args.batch_size, chunk_seconds=chunk_seconds_for(checkpoint, args.chunk_seconds),
                        predictor=predictor, progress=not args.quiet)
    failed, caveat = [r for r in results if "error" in r], ev.checkpoint_caveat(checkpoint)
    for r in failed:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), "caveat": caveat, "files": results}))
        return 1 if failed else 0
    for r in results:
        if "error" not in r:
            print(f"{r['file']}: {r['windows']} {'windows' if args.segments == 'fixed' else 'spans'} "
                  f"({r['silence_windows']} {'silence' if args.segments == 'fixed' else 'non-speech'}), mostly "
                  f"{r['most_frequent']}; wrote {', '.join(r['outputs'])}")
    if caveat:
        print(caveat)
    return 1 if failed else 0


def run(args) -> int:
    """Evaluate as evaluate.py's options say; returns the exit code (1 when an audio file failed)."""
    import jax

    from exhubert_jax.data.loading.devices import make_mesh, replicated
    from exhubert_jax.evaluation import scoring as ev
    from exhubert_jax.evaluation.predict import Predictor
    from exhubert_jax.pretrained import from_pretrained

    loaded = {}

    def predictor_for(checkpoint: Path):
        """(model, params, mesh-aware predictor) of a checkpoint, loaded once."""
        if checkpoint not in loaded:
            model, params = from_pretrained(checkpoint)
            mesh = make_mesh()
            params = jax.device_put(params, replicated(mesh))  # once, not with every batch
            loaded[checkpoint] = (model, params, Predictor(model, mesh))
        return loaded[checkpoint]

    if args.batch_size < 1:
        raise ev.EvaluationError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.timeline:
        from exhubert_jax.inference.timeline import check_window

        if args.audio is None:
            raise ev.EvaluationError("--timeline needs --audio FILE_OR_DIR")
        try:
            check_window(args.window, args.hop)
        except ValueError as e:
            raise ev.EvaluationError(str(e)) from None
    specs = list(dict.fromkeys(s.strip() for s in args.checkpoint.split(",") if s.strip()))
    check_options(args, specs)
    from exhubert_jax.cli.evaluate_degraded import check_degrade, run_degraded

    check_degrade(args, specs)  # before any model loads
    if args.audio is not None and args.input == "card":
        raise ev.EvaluationError("--input card applies to prepared corpora (--corpus); --audio feeds files in "
                                 "--chunk-seconds chunks with a padding mask")
    card_protocol(args)  # a bad --card-config fails before any model loads
    if args.audio is not None:
        ev.check_audio_path(args.audio)  # so does a missing, empty or truncated --audio file
    if args.corpus is not None:
        from exhubert_jax.data.loading.resolve import resolve_corpora

        resolve_corpora(args.corpus, args.data_dir)  # fail fast, before loading any model
        if len(specs) > 1:
            return run_comparison(args, specs, predictor_for)
    checkpoint = ev.resolve_checkpoint(args.checkpoint)
    model, params, predictor = predictor_for(checkpoint)
    if args.degrade:
        return run_degraded(args, model, params, checkpoint, label_spaces, warn_caveat)
    if args.corpus is not None:
        return run_corpora(args, model, params, checkpoint, predictor)
    if args.timeline:
        return run_timeline(args, model, params, checkpoint, predictor)
    return run_audio(args, model, params, checkpoint, predictor)
