"""Evaluate exhubert-jax checkpoints: UAR, WA, macro-F1 with 95 % bootstrap intervals, per-class recall, confusion
matrices and calibration per corpus (tables shaped like the paper's Table 1), a Table-2 comparison of several
checkpoints with paired tests against a baseline, or emotion probabilities for audio.

    python evaluate.py --corpus demo --checkpoint runs/finetune
    python evaluate.py --corpus aesi,vivae --checkpoint runs/transfer-aesi --labels native
    python evaluate.py --corpus unseen --checkpoint runs/hubert,runs/exhubert   # Table 2: RUN/transfer-CORPUS each
    python evaluate.py --corpus unseen --checkpoint runs/hubert,runs/exhubert --baseline runs/hubert
    python evaluate.py --corpus demo --checkpoint runs/finetune --calibrate     # temperature fitted on validation
    python evaluate.py --audio clips/ --json
    python evaluate.py --audio long.wav --timeline --window 3 --hop 1   # probabilities over time: CSV, JSON, PNG
"""

from __future__ import annotations

import argparse

from exhubert_jax.runtime.commands import command


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
                   help="masked: whole utterances with a padding mask; card: as the model card's feature-extractor "
                        "call feeds them (zero-padded to 3 s, never cropped, no mask)")
    p.add_argument("--card-config", default=None, metavar="PREPROCESSOR_CONFIG",
                   help="--input card: the card extractor's preprocessor_config.json (default: do_normalize=true, "
                        "return_attention_mask=false assumed)")
    p.add_argument("--out", default=None,
                   help="where evaluations go (default CHECKPOINT/eval): each into its own folder "
                        "<corpora>-<split>-<input>-<labels>/, all listed in index.md and index.json")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-seconds", type=float, default=3.0, help="--audio: longest chunk fed to the model")
    p.add_argument("--json", action="store_true", help="print one JSON document (logits included) and nothing else")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals of UAR, WA and macro-F1 (over speakers where the "
                        "split knows them, else over utterances) and for --baseline's paired test; 0: no intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and randomisation draws")
    p.add_argument("--calibrate", action="store_true",
                   help="fit one temperature on the corpora's validation split (minimum NLL), store it as "
                        "CHECKPOINT/temperature.json (later evaluations and --audio apply it) and show calibration "
                        "before and after on --split")
    p.add_argument("--baseline", default=None, metavar="RUN",
                   help="with several --checkpoint runs: test each against this one on the same test utterances "
                        "(UAR difference, paired-bootstrap interval, randomisation p-value, Holm over corpora)")
    p.add_argument("--timeline", action="store_true", help="--audio: class probabilities over time per file, in "
                                                            "sliding windows (OUT/timeline/FILE.csv, .json, .png)")
    p.add_argument("--window", type=float, default=3.0, help="--timeline: window length in seconds")
    p.add_argument("--hop", type=float, default=1.0, help="--timeline: seconds from one window's start to the next")
    p.add_argument("--segments", default="fixed", choices=("fixed", "vad"),
                   help="--timeline: fixed windows (--window/--hop), or vad: cut at speech pauses (Silero VAD); "
                        "silence / non-speech spans are marked, never classified")
    return p.parse_args(argv)


@command
def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage/data/checkpoint errors, 1 when an audio file failed)."""
    from exhubert_jax.cli.evaluate_runs import run

    return run(parse_args(argv))
