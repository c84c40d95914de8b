"""A SYNTHETIC long recording with known emotion segments: the demo's voices, one class per segment, silences between.

    python -m exhubert_jax.data.demo.recording OUT.wav [--minutes 10] [--seed 0]

writes OUT.wav (16 kHz) and OUT.csv (start_s, end_s, class: the planted segments; the gaps are silence). Each
segment strings together utterances of one class by one of the demo-a corpus's speakers (those of the demo with
the same seed; the utterances are new), with short pauses between utterances and 2-4 s of near silence between segments.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.data.demo.recording"))

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.demo.synthetic import DEMO_CORPORA, _speakers, synthesize
from exhubert_jax.data.prepare.splits import derive_seed
from exhubert_jax.data.sources.labels import CLASSES
from exhubert_jax.process.commands import command
from exhubert_jax.process.options import add_positionals, command_parser, option, parse, require_positionals


def segment(rng: np.random.Generator, cls: str, speaker: dict, seconds: float) -> np.ndarray:
    """About `seconds` of utterances (1-3 s each) of one class and speaker, 0.1-0.2 s pauses between them."""
    corpus, pieces, total = DEMO_CORPORA[0], [], 0.0
    while total < seconds:
        utterance = synthesize(rng, cls, speaker, corpus, rng.uniform(1.0, 3.0))[:, 0]
        pause = np.zeros(int(rng.uniform(0.1, 0.2) * SAMPLE_RATE), np.float32)
        pieces += [utterance, pause]
        total += (len(utterance) + len(pause)) / SAMPLE_RATE
    return np.concatenate(pieces[:-1])


def recording(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """(16 kHz mono audio of about `seconds`, planted segments as (start s, end s, class))."""
    rng = np.random.default_rng(derive_seed(seed, "recording"))
    speakers = list(_speakers(DEMO_CORPORA[0], seed, 4).values())  # the demo-a voices of `seed`
    pieces, segments, now = [], [], 0.0
    while now < seconds:
        gap = (1e-4 * rng.standard_normal(int(rng.uniform(2.0, 4.0) * SAMPLE_RATE))).astype(np.float32)
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        voiced = segment(rng, cls, speakers[int(rng.integers(len(speakers)))], rng.uniform(10.0, 25.0))
        pieces += [gap, voiced]
        start = now + len(gap) / SAMPLE_RATE
        now = start + len(voiced) / SAMPLE_RATE
        segments.append((start, now, cls))
    return np.concatenate(pieces), segments


@dataclasses.dataclass
class RecordingOptions:
    """The command's flags (a --config file's keys are these names, and `out`)."""

    minutes: float = option(10.0, type=float)
    seed: int = option(0, type=int)


@dataclasses.dataclass
class RecordingPaths:
    """The positional argument, which a --config file may give instead."""

    out: str | None = option(None, help="the .wav file to write (its segments go to the same name with .csv)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line over --config's values (flags win); OUT is required from either."""
    p = command_parser(__doc__.splitlines()[0], RecordingOptions, prog="python -m exhubert_jax.data.demo.recording")
    add_positionals(p, RecordingPaths)
    args = parse(p, argv, RecordingOptions, RecordingPaths)
    require_positionals(p, args, RecordingPaths)
    return args


@command
def main(argv: list[str] | None = None) -> int:
    """CLI: write the recording and its segment list."""
    args = parse_args(argv)
    import soundfile as sf

    audio, segments = recording(60 * args.minutes, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, audio, SAMPLE_RATE, subtype="PCM_16")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        csv.writer(f).writerows([("start_s", "end_s", "class"), *((f"{a:.3f}", f"{b:.3f}", c) for a, b, c in segments)])
    print(f"wrote {out} ({len(audio) / SAMPLE_RATE:.1f} s, {len(segments)} segments) and {out.with_suffix('.csv')}")
    return 0
