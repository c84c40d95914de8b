"""Evaluate exhubert-jax checkpoints: UAR, WA, macro-F1, per-class recall and confusion matrices per corpus (tables
shaped like the paper's Table 1), a Table-2 comparison of several checkpoints, or emotion probabilities for audio.

    python evaluate.py --corpus demo --checkpoint runs/finetune
    python evaluate.py --corpus aesi,vivae --checkpoint runs/transfer-aesi --labels native
    python evaluate.py --corpus unseen --checkpoint runs/hubert,runs/exhubert   # Table 2: RUN/transfer-CORPUS each
    python evaluate.py --audio clips/ --json
    python evaluate.py --audio long.wav --timeline --window 3 --hop 1   # probabilities over time: CSV, JSON, PNG
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (no abbreviations)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--corpus", help="prepared corpus name(s), comma-separated; or demo, unseen, emoset, all")
    what.add_argument("--audio", help="an audio file or a directory of them (any format/sample rate)")
    p.add_argument("--checkpoint", default="runs/finetune",
                   help="save_pretrained directory or training workdir (uses best/, else final/); several, "
                        "comma-separated, give one Table-2 column each (a workdir's transfer-CORPUS/ runs are used "
                        "for CORPUS when present)")
    p.add_argument("--split", default="test", choices=("test", "validation", "train"))
    p.add_argument("--data-dir", default=None, help="prepared data dir (default $EXHUBERT_DATA or data/prepared)")
    p.add_argument("--labels", default="auto", choices=("auto", "emotion", "native"),
                   help="score the 6 emotion classes or the corpus's native labels; auto: whichever the head has")
    p.add_argument("--input", default="masked", choices=("masked", "card"),
                   help="masked: whole utterances with a padding mask; card: the model card's first 3 s, zero "
                        "padded to exactly 3 s, no mask")
    p.add_argument("--out", default=None, help="output folder (default CHECKPOINT/eval)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-seconds", type=float, default=3.0, help="--audio: longest chunk fed to the model")
    p.add_argument("--json", action="store_true", help="print one JSON document (logits included) and nothing else")
    p.add_argument("--timeline", action="store_true", help="--audio: class probabilities over time per file, in "
                                                            "sliding windows (OUT/timeline/FILE.csv, .json, .png)")
    p.add_argument("--window", type=float, default=3.0, help="--timeline: window length in seconds")
    p.add_argument("--hop", type=float, default=1.0, help="--timeline: seconds from one window's start to the next")
    p.add_argument("--segments", default="fixed", choices=("fixed", "vad"),
                   help="--timeline: fixed windows (--window/--hop), or vad: cut at speech pauses (Silero VAD); "
                        "silence / non-speech spans are marked, never classified")
    return p.parse_args(argv)


def label_space_for(args, model, corpus) -> str:
    """--labels, or for auto the space the model's head was trained on."""
    from exhubert_jax import evaluation as ev

    if args.labels != "auto":
        return args.labels
    return "native" if ev.model_class_names(model.config) == list(corpus.native_labels) else "emotion"


def run_corpora(args, model, params, checkpoint: Path, predictor) -> int:
    """Evaluate each corpus, write confusion PNG/JSON + results.json/.md, print the table (or JSON)."""
    from exhubert_jax import evaluation as ev
    from exhubert_jax import reporting
    from exhubert_jax.data.dataset import open_prepared
    from exhubert_jax.data.resolve import resolve_corpora

    names = resolve_corpora(args.corpus, args.data_dir)
    spaces = {}
    for name in names:  # every head/label mismatch before any work
        corpus = open_prepared(name, args.data_dir)
        spaces[name] = label_space_for(args, model, corpus)
        ev.check_label_space(model.config, spaces[name], corpus.native_labels, corpus.name)
    out = Path(args.out) if args.out else checkpoint / "eval"
    out.mkdir(parents=True, exist_ok=True)
    caveat = ev.checkpoint_caveat(checkpoint)
    results = []
    for name in names:
        print(f"evaluating {name} ({args.split})...", file=sys.stderr)
        r = ev.evaluate_corpus(model, params, name, args.split, args.batch_size, args.data_dir, spaces[name],
                               predictor, input_mode=args.input)
        tag = Path(r["corpus"]).name
        reporting.plot_confusion(r["confusion_matrix"], r["class_names"], out / f"confusion_{tag}.png",
                                 title=f"{r['corpus']} ({args.split}): UAR {100 * r['uar']:.1f}%")
        summary = {k: v for k, v in r.items() if k != "utterances"}
        (out / f"confusion_{tag}.json").write_text(json.dumps({"checkpoint": str(checkpoint), **summary}, indent=2))
        results.append(r)
    heading = f"Checkpoint `{checkpoint}`, split `{args.split}`, input `{args.input}`"
    table = reporting.markdown_table(results)
    doc = {"checkpoint": str(checkpoint), "split": args.split, "input": args.input, "caveat": caveat,
           "results": results}
    (out / "results.json").write_text(json.dumps(doc))
    (out / "results.md").write_text(f"{heading}\n\n{table}" + (f"\n{caveat}\n" if caveat else ""))
    if args.json:
        print(json.dumps({**doc, "table": table, "out": str(out)}))
    else:
        print(f"{heading}\n\n{table}")
        if caveat:
            print(caveat)
        print(f"wrote {out}/: results.md, results.json, confusion_<corpus>.png/.json for {', '.join(names)}")
    return 0


def run_comparison(args, specs: list[str], predictor_for) -> int:
    """Table 2: one column per checkpoint, one row per corpus, average UAR and trainable parameters."""
    from exhubert_jax import evaluation as ev
    from exhubert_jax import reporting
    from exhubert_jax.data.dataset import open_prepared
    from exhubert_jax.data.resolve import resolve_corpora

    names = resolve_corpora(args.corpus, args.data_dir)
    uars, trainable, cells = {}, {}, []
    for spec in specs:
        uars[spec] = {}
        for name in names:
            checkpoint = ev.resolve_checkpoint(ev.per_corpus_run(spec, name))
            model, params, predictor = predictor_for(checkpoint)
            corpus = open_prepared(name, args.data_dir)
            space = label_space_for(args, model, corpus)
            print(f"evaluating {name} ({args.split}) with {checkpoint}...", file=sys.stderr)
            r = ev.evaluate_corpus(model, params, corpus, args.split, args.batch_size, args.data_dir, space,
                                   predictor, input_mode=args.input)
            uars[spec][name] = r["uar"]
            trainable.setdefault(spec, ev.trainable_parameters(checkpoint, model, params))
            cells.append({"checkpoint": str(checkpoint), "column": spec, "corpus": name, "label_space": space,
                          "uar": r["uar"], "n": r["n"]})
    table = reporting.comparison_table(uars, trainable)
    doc = {"split": args.split, "input": args.input, "columns": specs, "cells": cells,
           "trainable_parameters": trainable, "table": table}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "comparison.json").write_text(json.dumps(doc, indent=2))
        (Path(args.out) / "comparison.md").write_text(table)
    print(json.dumps(doc) if args.json else f"Performance on the {args.split} split in [% UAR]\n\n{table}")
    return 0


def run_audio(args, model, params, checkpoint: Path, predictor) -> int:
    """Predict files; print a table (or JSON); exit 1 when any file failed."""
    from exhubert_jax import evaluation as ev
    from exhubert_jax import reporting

    if not Path(args.audio).exists() or not ev.input_files(args.audio):
        raise ev.EvaluationError(f"no audio files found at {args.audio}")
    results = ev.predict_audio(model, params, args.audio, args.chunk_seconds, args.batch_size, predictor)
    names = ev.model_class_names(model.config)
    caveat = ev.checkpoint_caveat(checkpoint)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    for r in results:
        if "warning" in r:
            print(f"warning: {r['file']}: {r['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), "caveat": caveat, "class_names": names, "files": results}))
    else:
        print(f"Checkpoint `{checkpoint}`\n\n{reporting.audio_table(results, names)}")
        if caveat:
            print(caveat)
    return 1 if failed else 0


def run_timeline(args, model, params, checkpoint: Path, predictor) -> int:
    """Write each file's timeline; print one line per file (or JSON); exit 1 when any file failed."""
    from exhubert_jax import evaluation as ev
    from exhubert_jax.timeline import timelines

    if not Path(args.audio).exists() or not ev.input_files(args.audio):
        raise ev.EvaluationError(f"no audio files found at {args.audio}")
    out = Path(args.out or checkpoint / "eval") / "timeline"
    results = timelines(model, params, args.audio, out, window_s=args.window, hop_s=args.hop, segments=args.segments,
                        batch_size=args.batch_size, chunk_seconds=args.chunk_seconds, predictor=predictor)
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


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage/data/checkpoint errors, 1 when an audio file failed)."""
    args = parse_args(argv)
    import jax

    from exhubert_jax import evaluation as ev
    from exhubert_jax.checkpoint import from_pretrained
    from exhubert_jax.errors import ExhubertError
    from exhubert_jax.predict import Predictor
    from exhubert_jax.training import make_mesh, replicated

    loaded = {}

    def predictor_for(checkpoint: Path):
        """(model, params, mesh-aware predictor) of a checkpoint, loaded once."""
        if checkpoint not in loaded:
            model, params = from_pretrained(checkpoint)
            mesh = make_mesh()
            params = jax.device_put(params, replicated(mesh))  # once, not with every batch
            loaded[checkpoint] = (model, params, Predictor(model, mesh))
        return loaded[checkpoint]

    try:
        if args.batch_size < 1:
            raise ev.EvaluationError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.timeline:
            from exhubert_jax.timeline import check_window

            if args.audio is None:
                raise ev.EvaluationError("--timeline needs --audio FILE_OR_DIR")
            try:
                check_window(args.window, args.hop)
            except ValueError as e:
                raise ev.EvaluationError(str(e)) from None
        specs = list(dict.fromkeys(s.strip() for s in args.checkpoint.split(",") if s.strip()))
        if args.corpus is not None:
            from exhubert_jax.data.resolve import resolve_corpora

            resolve_corpora(args.corpus, args.data_dir)  # fail fast, before loading any model
            if len(specs) > 1:
                return run_comparison(args, specs, predictor_for)
        checkpoint = ev.resolve_checkpoint(args.checkpoint)
        model, params, predictor = predictor_for(checkpoint)
        if args.corpus is not None:
            return run_corpora(args, model, params, checkpoint, predictor)
        if args.timeline:
            return run_timeline(args, model, params, checkpoint, predictor)
        return run_audio(args, model, params, checkpoint, predictor)
    except ExhubertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from exhubert_jax.runtime import use_hugepage_malloc

    use_hugepage_malloc()  # restarts this script once with huge-page malloc: far fewer page faults per XLA step
    sys.exit(main())
