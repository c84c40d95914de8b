"""Evaluate exhubert-jax checkpoints: UAR, WA, macro-F1 with 95 % bootstrap intervals, per-class recall, confusion
matrices and calibration per corpus (tables shaped like the paper's Table 1), a Table-2 comparison of several
checkpoints with paired tests against a baseline, or emotion probabilities for audio.

    python evaluate.py --corpus demo --checkpoint runs/finetune
    python evaluate.py --corpus aesi,vivae --checkpoint runs/transfer-aesi --labels native
    python evaluate.py --corpus unseen --checkpoint runs/hubert,runs/exhubert   # Table 2: RUN/transfer-CORPUS each
    python evaluate.py --corpus unseen --checkpoint runs/hubert,runs/exhubert --baseline runs/hubert
    python evaluate.py --corpus demo --checkpoint runs/finetune --calibrate     # temperature fitted on validation
    python evaluate.py --corpus emodb,ravdess --checkpoint runs/finetune --by gender,corpus   # results per group
    python evaluate.py --audio clips/ --json
    python evaluate.py --audio long.wav --timeline --window 3 --hop 1   # probabilities over time: CSV, JSON, PNG
    python evaluate.py --corpus demo --degrade noise:snr=0 --degrade reverb:rt60=0.8 --degrade codec:name=mp3
"""

from __future__ import annotations

import argparse
import dataclasses

from exhubert_jax.cli.evaluate_degraded import degrade_specs, holds_audio
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Check, command_parser, option, parse


@dataclasses.dataclass
class EvaluateOptions:
    """evaluate.py's options, each declared once (process.options.option); --corpus or --audio says what to score."""

    corpus: str | None = option(None, help="prepared corpus name(s), comma-separated; or demo, unseen, emoset, all")
    audio: str | None = option(None, help="an audio file or a directory of them (any format/sample rate)")
    checkpoint: str = option("runs/finetune",
                             help="save_pretrained directory, training workdir (uses best/, else final/) or Hub id "
                                  "org/name[@revision]; several, comma-separated, give one Table-2 column each (a "
                                  "workdir's transfer-CORPUS/ runs are used for CORPUS when present)")
    split: str = option("test", choices=("test", "validation", "train"))
    data_dir: str | None = option(None, help="prepared data dir (default $EXHUBERT_DATA or data/prepared)")
    labels: str = option("auto", choices=("auto", "emotion", "native"),
                         help="score the 6 emotion classes or the corpus's native labels; auto: whichever the head "
                              "has")
    input: str = option("masked", choices=("masked", "card"),
                        help="masked: whole utterances with a padding mask; card: as the model card's "
                             "feature-extractor call feeds them (zero-padded to 3 s, never cropped, no mask)")
    card_config: str | None = option(None, metavar="PREPROCESSOR_CONFIG",
                                     help="--input card: the card extractor's preprocessor_config.json (default: "
                                          "do_normalize=true, return_attention_mask=false assumed)")
    out: str | None = option(None, help="where evaluations go (default CHECKPOINT/eval; for a Hub id eval/ORG--NAME "
                                        "here): each into its own folder <corpora>-<split>-<input>-<labels>/, all "
                                        "listed in index.md and index.json")
    batch_size: int = option(8, type=int, check=AT_LEAST_1)
    chunk_seconds: float = option(3.0, type=float, check=POSITIVE, help="--audio: longest chunk fed to the model")
    json: bool = option(False, action="store_true",
                        help="print one JSON document (logits included) and nothing else")
    bootstrap: int = option(1000, type=int, metavar="N", check=NON_NEGATIVE,
                            help="bootstrap resamples for the 95%% intervals of UAR, WA and macro-F1 (over speakers "
                                 "where the split knows them, else over utterances) and for --baseline's paired test; "
                                 "0: no intervals")
    seed: int = option(0, type=int, help="seed of the bootstrap and randomisation draws")
    by: str | None = option(None, metavar="GROUPING",
                            help="--corpus: results per group too, comma-separated from gender, language, corpus, "
                                 "speaker: each group's metrics with intervals and the UAR gap between groups with a "
                                 "permutation test (docs/groups.md)")
    calibrate: bool = option(False, action="store_true",
                             help="fit one temperature on the corpora's validation split (minimum NLL), store it as "
                                  "CHECKPOINT/temperature.json (later evaluations and --audio apply it) and show "
                                  "calibration before and after on --split")
    baseline: str | None = option(None, metavar="RUN",
                                  help="with several --checkpoint runs: test each against this one on the same test "
                                       "utterances (UAR difference, paired-bootstrap interval, randomisation "
                                       "p-value, Holm over corpora)")
    timeline: bool = option(False, action="store_true",
                            help="--audio: class probabilities over time per file, in sliding windows "
                                 "(OUT/timeline/SETTINGS/FILE.csv, .json, .png; SETTINGS e.g. fixed-window3s-hop1s, "
                                 "vad)")
    window: float = option(3.0, type=float, help="--timeline: window length in seconds")
    hop: float = option(1.0, type=float, check=POSITIVE,
                        help="--timeline: seconds from one window's start to the next")
    segments: str = option("fixed", choices=("fixed", "vad"),
                           help="--timeline: fixed windows (--window/--hop), or vad: cut at speech pauses (Silero "
                                "VAD); silence / non-speech spans are marked, never classified")
    degrade: tuple[str, ...] | None = option(
        None, action="append", metavar="KIND[:key=value,...]", parse=degrade_specs,
        help="--corpus: score the split clean and under each condition (repeat the flag): noise:snr=DB,colour=white, "
             "reverb:rt60=S,drr=DB, codec:name=mp3|opus|vorbis|gsm[,kbps=N|quality=Q], telephone, clip:db=DB; "
             "paired tests against clean, a table and a plot (docs/robustness.md)")
    noise_dir: str | None = option(None, metavar="DIR", check=Check(holds_audio, "must be a folder holding audio files"),
                                   help="--degrade noise: segments of your noise recordings instead of generated noise")
    rir_dir: str | None = option(None, metavar="DIR", check=Check(holds_audio, "must be a folder holding audio files"),
                                 help="--degrade reverb: your impulse responses instead of generated exponential ones")
    quiet: bool = option(False, action="store_true",
                         help="no progress and no 'evaluating ...' lines on stderr: only warnings, errors and the "
                              "results")


def build_parser() -> argparse.ArgumentParser:
    """The command line: --config and the flags EvaluateOptions declares (no abbreviations)."""
    return command_parser(__doc__, EvaluateOptions)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options over --config's values; exactly one of --corpus and --audio."""
    parser = build_parser()
    args = parse(parser, argv, EvaluateOptions)
    if (args.corpus is None) == (args.audio is None):
        parser.error("give exactly one of --corpus and --audio" if args.corpus is None
                     else "argument --audio: not allowed with argument --corpus")
    return args


@command
def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for usage/data/checkpoint errors, 1 when an audio file failed)."""
    from exhubert_jax.cli.evaluate_runs import run

    return run(parse_args(argv))
