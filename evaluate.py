"""Evaluate an exhubert-jax checkpoint: UAR, WA, macro-F1, per-class recall and confusion matrices per corpus
(tables shaped like the paper's Tables 1 and 2), or predict emotion probabilities for audio files.

    python evaluate.py --corpus demo --checkpoint runs/finetune
    python evaluate.py --corpus aesi,vivae --checkpoint runs/transfer-aesi --labels native
    python evaluate.py --audio clips/ --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--corpus", help="prepared corpus name(s), comma-separated; or demo, unseen, all")
    what.add_argument("--audio", help="an audio file or a directory of them (any format/sample rate)")
    p.add_argument("--checkpoint", default="runs/finetune",
                   help="save_pretrained directory, or a training workdir (uses best/, else final/)")
    p.add_argument("--split", default="test", choices=("test", "validation", "train"))
    p.add_argument("--data-dir", default=None, help="prepared data dir (default $EXHUBERT_DATA or data/prepared)")
    p.add_argument("--labels", default="emotion", choices=("emotion", "native"),
                   help="score the 6 emotion classes, or a head trained on the corpus's native labels")
    p.add_argument("--out", default=None, help="output folder (default CHECKPOINT/eval)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-seconds", type=float, default=3.0, help="--audio: longest chunk fed to the model")
    p.add_argument("--json", action="store_true", help="print one JSON document (logits included) and nothing else")
    return p.parse_args(argv)


def run_corpora(args, model, params, checkpoint: Path) -> int:
    """Evaluate each corpus, write confusion PNG/JSON + results.json/.md, print the table (or JSON)."""
    from exhubert_jax import evaluation as ev
    from exhubert_jax.data.dataset import open_prepared

    names = ev.resolve_corpora(args.corpus, args.data_dir)
    for name in names:  # every head/label mismatch before any work
        corpus = open_prepared(name, args.data_dir)
        ev.check_label_space(model.config, args.labels, corpus.native_labels, corpus.name)
    out = Path(args.out) if args.out else checkpoint / "eval"
    out.mkdir(parents=True, exist_ok=True)
    predict = ev.make_predict_fn(model)
    results = []
    for name in names:
        print(f"evaluating {name} ({args.split})...", file=sys.stderr)
        r = ev.evaluate_corpus(model, params, name, args.split, args.batch_size, args.data_dir, args.labels, predict)
        tag = Path(r["corpus"]).name
        ev.plot_confusion(r["confusion_matrix"], r["class_names"], out / f"confusion_{tag}.png",
                          title=f"{r['corpus']} ({args.split}): UAR {100 * r['uar']:.1f}%")
        summary = {k: v for k, v in r.items() if k != "utterances"}
        (out / f"confusion_{tag}.json").write_text(json.dumps(summary, indent=2))
        results.append(r)
    table = ev.markdown_table(results)
    doc = {"checkpoint": str(checkpoint), "split": args.split, "label_space": args.labels, "results": results}
    (out / "results.json").write_text(json.dumps(doc))
    (out / "results.md").write_text(f"Checkpoint `{checkpoint}`, split `{args.split}`\n\n{table}")
    if args.json:
        print(json.dumps({**doc, "table": table, "out": str(out)}))
    else:
        print(table)
        print(f"wrote {out}/: results.md, results.json, confusion_<corpus>.png/.json for {', '.join(names)}")
    return 0


def run_audio(args, model, params, checkpoint: Path) -> int:
    """Predict files; print a table (or JSON); exit 1 when any file failed."""
    from exhubert_jax import evaluation as ev

    if not Path(args.audio).exists() or not ev.audio_files(args.audio):
        raise ev.EvaluationError(f"no audio files found at {args.audio}")
    results = ev.predict_audio(model, params, args.audio, args.chunk_seconds, args.batch_size)
    names = ev.model_class_names(model.config)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), "class_names": names, "files": results}))
    else:
        print(ev.audio_table(results, names))
    return 1 if failed else 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage/data/checkpoint errors, 1 when an audio file failed)."""
    args = parse_args(argv)
    from exhubert_jax import evaluation as ev
    from exhubert_jax.checkpoint import CheckpointError, from_pretrained
    from exhubert_jax.config import ConfigError
    from exhubert_jax.data.errors import DataError

    try:
        checkpoint = ev.resolve_checkpoint(args.checkpoint)
        if args.corpus is not None:
            ev.resolve_corpora(args.corpus, args.data_dir)  # fail fast, before loading the model
        model, params = from_pretrained(checkpoint)
        run = run_corpora if args.corpus is not None else run_audio
        return run(args, model, params, checkpoint)
    except (ev.EvaluationError, CheckpointError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
