"""Write per-file embeddings of a checkpoint for a prepared corpus or an audio folder (.npy + index.csv), and
optionally fit a linear probe on them.

    python -m exhubert_jax.embed --checkpoint runs/finetune --corpus demo-a --split all --out emb/ --layer last
    python -m exhubert_jax.embed --checkpoint runs/finetune --audio clips/ --level frame --layer 3 --out emb/
    python -m exhubert_jax.embed --checkpoint runs/finetune --corpus demo-a --probe logreg --out emb/
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.inference.embedding_files"))

import argparse
import dataclasses
import json
from pathlib import Path

from exhubert_jax.process.atomic_files import write_text
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, OptionsError, add_flags, command_parser,
                                          option, parse)

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class EmbedInput:
    """What to embed: one of the two (a prepared corpus, or audio)."""

    corpus: str | None = option(None, help="one prepared corpus")
    audio: str | None = option(None, help="an audio file or a directory of them (any format/sample rate)")


@dataclasses.dataclass
class EmbedOptions:
    """The checkpoint, the embeddings' level and layer, where they go, and the optional probe."""

    checkpoint: str = option("runs/finetune", help="save_pretrained directory, training workdir or Hub id "
                                                   "org/name[@revision]")
    split: str = option("test", choices=(*SPLITS, "all"), help="--corpus: which split(s)")
    data_dir: str | None = option(None, help="prepared data dir (default $EXHUBERT_DATA or data/prepared)")
    level: str = option("utterance", choices=("utterance", "frame"),
                        help="utterance: the mean over an utterance's frames; frame: every frame")
    layer: str = option("last", help="N (hidden state N, 0 = the transformer's input), last, all, weighted (the "
                                     "learnt layer weights), or projector (the projector's output; at utterance "
                                     "level the classifier's input)")
    out: str | None = option(None, help="output folder")
    batch_size: int = option(8, type=int, check=AT_LEAST_1)
    chunk_seconds: float = option(3.0, type=float, check=POSITIVE, help="longest chunk fed to the model")
    probe: str | None = option(None, choices=("logreg",),
                               help="--corpus: fit a standardised logistic regression on the train embeddings, pick "
                                    "C on validation, report test UAR with its bootstrap interval")
    bootstrap: int = option(1000, type=int, check=NON_NEGATIVE, help="--probe: resamples of the test UAR interval")
    seed: int = option(0, type=int, help="--probe: seed of the bootstrap")
    quiet: bool = option(False, action="store_true",
                         help="no progress and no 'embedding ...' lines on stderr: only warnings, errors and the "
                              "results")


def build_parser() -> argparse.ArgumentParser:
    """The command line (no abbreviations): --config, one of --corpus and --audio, then EmbedOptions' flags; --out
    and one of --corpus/--audio are required unless the --config file sets them."""
    p = command_parser(__doc__, prog="python -m exhubert_jax.embed")
    add_flags(p.add_mutually_exclusive_group(required=True), EmbedInput)
    add_flags(p, EmbedOptions)
    for action in p._actions:
        action.required = action.required or action.dest == "out"
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options over --config's values: a flag wins over the file, and --corpus or --audio on the command
    line over the other one in the file."""
    args = parse(build_parser(), argv, EmbedInput, EmbedOptions)
    if args.corpus is not None and args.audio is not None:  # argparse refuses both on the command line
        from_file = {"corpus", "audio"} & args.config_keys
        if len(from_file) == 2:
            raise OptionsError(f"--config {args.config}: sets both corpus and audio; give one of them")
        setattr(args, from_file.pop(), None)
    return args


def check(args, model) -> None:
    """EmbeddingError for option combinations that cannot run, before any audio is read."""
    from exhubert_jax.inference.embeddings import EmbeddingError, check_layer

    args.layer = check_layer(args.layer, model.config)
    if args.batch_size < 1:
        raise EmbeddingError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.probe and (args.corpus is None or args.level != "utterance" or args.layer == "all"):
        raise EmbeddingError("--probe needs --corpus, --level utterance and one layer (not --layer all)")


def embed_corpus(args, embedder, params) -> dict[str, tuple[list, list]]:
    """split -> (embeddings, index rows) of the chosen splits (all three for --probe)."""
    from exhubert_jax.data.loading.dataset import open_prepared
    from exhubert_jax.inference.embeddings import EmbeddingError, embed_split

    corpus = open_prepared(args.corpus, args.data_dir)
    wanted = SPLITS if args.probe or args.split == "all" else (args.split,)
    missing = [s for s in wanted if s not in corpus.splits]
    if missing and (args.probe or args.split != "all"):
        raise EmbeddingError(f"{corpus.name} has no {' or '.join(missing)} split (splits: {', '.join(corpus.splits)})")
    out = {}
    for s in (s for s in wanted if s in corpus.splits):
        if not args.quiet:
            print(f"embedding {corpus.name} ({s})...", file=sys.stderr)
        out[s] = embed_split(embedder, params, corpus.split(s), args.level, args.chunk_seconds, args.batch_size,
                             progress=not args.quiet)
    return out


def run_probe(args, parts: dict) -> dict:
    """Fit the probe on train, pick C on validation, score test: {C, validation_uar, test uar, interval}."""
    import numpy as np

    from exhubert_jax.evaluation import bootstrap, metrics
    from exhubert_jax.inference import probe
    from exhubert_jax.model.config import EMOTION_CLASSES

    def xy(split):
        """(embeddings, class indices, index rows) of one split."""
        arrays, rows = parts[split]
        return np.stack(arrays), np.asarray([EMOTION_CLASSES.index(r["label"]) for r in rows]), rows

    (xt, yt, _), (xv, yv, _), (xs, ys, rows) = xy("train"), xy("validation"), xy("test")
    k = len(EMOTION_CLASSES)
    model, c, scores = probe.fit_probe(xt, yt, xv, yv, k)
    pred = model.predict(xs)
    doc = {"probe": "logreg", "C": c, "validation_uar": scores, "test_uar": metrics.uar(ys, pred, k),
           "n": {"train": len(yt), "validation": len(yv), "test": len(ys)}}
    if args.bootstrap > 0:
        doc["test_interval"], _ = bootstrap.intervals(ys, pred, k, [r["speaker"] or None for r in rows],
                                                      args.bootstrap, args.seed, name=args.corpus)
    return doc


@command
def main(argv=None) -> int:
    """Entry point; 2 for user errors (one line, no traceback)."""
    args = parse_args(argv)
    from exhubert_jax.data.audio import check_audio_file
    from exhubert_jax.evaluation.scoring import check_audio_path, resolve_checkpoint
    from exhubert_jax.inference import embeddings as emb
    from exhubert_jax.pretrained import from_pretrained

    # the first bad file stops the command: each one is checked (missing, empty, truncated) before the model loads
    files = None if args.audio is None else [check_audio_file(f) for f in check_audio_path(args.audio)]
    model, params = from_pretrained(resolve_checkpoint(args.checkpoint))
    check(args, model)
    embedder = emb.Embedder(model, args.layer)
    if args.corpus is not None:
        parts = embed_corpus(args, embedder, params)
    else:
        parts = {"files": emb.embed_files(embedder, params, files, args.level, args.chunk_seconds,
                                          args.batch_size, progress=not args.quiet)}
    arrays = [x for split_arrays, _ in parts.values() for x in split_arrays]
    rows = [r for _, split_rows in parts.values() for r in split_rows]
    written = emb.write_embeddings(args.out, arrays, rows, args.level)
    summary = {"out": args.out, "files": len(rows), "level": args.level, "layer": args.layer,
               "shape": list(arrays[0].shape) if arrays else None, "compiled_shapes": embedder.compiled_shapes}
    if args.probe:
        summary["probe"] = p = run_probe(args, parts)
        write_text(Path(args.out) / "probe.json", json.dumps(p, indent=2))
        ci = p.get("test_interval")
        interval = f" [{100 * ci['uar'][0]:.1f}, {100 * ci['uar'][1]:.1f}], {ci['method']}" if ci else ""
        print(f"probe: logistic regression, C = {p['C']:g} (validation UAR "
              f"{100 * p['validation_uar'][p['C']]:.1f}%), test UAR {100 * p['test_uar']:.1f}%{interval}",
              file=sys.stderr)
    print(json.dumps(summary))
    print(f"wrote {written[0]} and {len(written) - 1} .npy file(s)", file=sys.stderr)
    return 0
