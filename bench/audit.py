"""The leakage audit's cost and accuracy at scale: N generated utterances (source-filter "speech": a band-limited
pulse train on an F0 contour through vowel formants, consonant noise bursts, 200 speakers; every file a fresh
rendering) plus planted copies of some (exact, resampled to 8 kHz and back, -6 dB, trimmed by 0.1 s, Ogg Vorbis),
fingerprinted in worker processes and matched once (exhubert_jax.data.audit.near). Per N: the time to generate and
to fingerprint (per file, measured in the workers, and the wall time of both), to index, to count the votes and to
match; the votes counted; peak RSS of the matching process and of a worker; the planted copies found per transform
(false negatives) and the pairs flagged that were not planted (false positives, and their rate over all pairs).

    python bench/audit.py --n 5000,20000,50000 --plant 100 --workers 2   # one process per N, then a table
    python bench/audit.py --n 50000 --json                                # one N in this process: its JSON line

The audio is generated, fingerprinted and dropped one utterance at a time (generating one costs about as much as
fingerprinting it, and is reported apart), so prepared-corpus reading (TFDS) is not part of it; bench/loader.py
measures that.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exhubert_jax.data.audio import to_pcm16
from exhubert_jax.data.audit.fingerprints import fingerprint
from exhubert_jax.data.audit.near import PART_VOTES, candidates, inverted_index, matches
from exhubert_jax.data.prepare.decoding import worker_map

SR, GEN = 16000, 8000  # made at 8 kHz (the fingerprint reads 0-4 kHz), returned at 16 kHz
SPEAKERS = 200
VOWELS = np.asarray([(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
                     (660, 1720, 2410), (400, 1920, 2560), (490, 1350, 2250), (440, 1020, 2240), (310, 2020, 2960)])
BANDWIDTHS = (90.0, 110.0, 160.0)  # of the three formants, Hz
SYLLABLE = np.sin(np.pi * np.clip((np.linspace(0, 1, 1024, endpoint=False) - 0.1) / 0.75, 0, 1)) ** 2  # vowel
ONSET = np.exp(-np.linspace(0, 6, 1024, endpoint=False))  # a consonant's noise burst at a syllable's start
TRANSFORMS = ("exact", "8k", "gain", "trim", "ogg")


def resonators(formants, bandwidths) -> np.ndarray:
    """The denominator of a cascade of two-pole resonators at GEN."""
    a = np.ones(1)
    for f, bw in zip(formants, bandwidths):
        r = np.exp(-np.pi * bw / GEN)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * f / GEN), r * r])
    return a


def pulses(cycles: np.ndarray, harmonics: int) -> np.ndarray:
    """A band-limited pulse train: the sum of harmonics 1..harmonics of the phase `cycles` (Dirichlet kernel)."""
    half = np.sin(np.pi * cycles)
    small = np.abs(half) < 1e-9
    return np.where(small, harmonics, np.sin(np.pi * (2 * harmonics + 1) * cycles) / (2 * np.where(small, 1, half))
                    - 0.5)


def utterance(i: int) -> np.ndarray:
    """Generated utterance i (2-3 s, float32 at 16 kHz): one of SPEAKERS speakers (F0 level, vocal tract length);
    random syllables (3-6 per second), each a vowel (three formants) on a sine F0 contour and a consonant (a noise
    burst through one random 1.5-3.7 kHz resonance) at its onset; a noise floor."""
    import soxr
    from scipy.signal import lfilter

    rng = np.random.default_rng(i)
    spk = np.random.default_rng(10 ** 9 + i % SPEAKERS)
    f0_base, vtl = spk.uniform(90, 240), spk.uniform(0.85, 1.15)
    seconds = rng.uniform(2.0, 3.0)
    n = int(seconds * GEN)
    n_syl = max(2, int(seconds * rng.uniform(3.0, 6.0)))
    depth = rng.uniform(0.05, 0.3)
    f0 = f0_base * (1 + depth * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * np.arange(n) / GEN + rng.uniform(0, 6)))
    source = pulses(np.cumsum(f0 / GEN), int(3800 / (f0_base * (1 + depth))))
    bounds = np.linspace(0, n, n_syl + 1).astype(int)
    vowels = VOWELS[rng.integers(0, len(VOWELS), n_syl)] * vtl
    x = np.concatenate([lfilter([1.0], resonators(v, BANDWIDTHS), source[a:b])
                        for v, a, b in zip(vowels, bounds, bounds[1:])])
    noise = rng.standard_normal(n)
    c = lfilter([1.0], resonators([rng.uniform(1500, 3700)], [600.0]), noise)
    phase = (np.arange(n) * (n_syl * 1024 / n)).astype(np.int64) % 1024  # where each sample is in its syllable
    x = x * SYLLABLE[phase] / np.abs(x).max() + 0.3 * c * ONSET[phase] / np.abs(c).max() + 0.01 * noise[::-1]
    return soxr.resample((0.8 * x / np.abs(x).max()).astype(np.float32), GEN, SR)


def transformed(x: np.ndarray, how: str) -> np.ndarray:
    """A planted copy of x."""
    import soundfile as sf
    import soxr

    if how == "8k":
        return soxr.resample(soxr.resample(x, SR, 8000), 8000, SR)
    if how == "gain":
        return x * np.float32(10 ** (-6 / 20))
    if how == "trim":
        return x[int(0.1 * SR):]
    if how == "ogg":
        buf = io.BytesIO()
        sf.write(buf, x, SR, format="OGG", subtype="VORBIS")
        buf.seek(0)
        return sf.read(buf, dtype="float32")[0]
    return x


def job(spec: tuple[int, str | None]):
    """(fingerprint, seconds of audio, seconds generating, seconds fingerprinting, this worker's peak RSS in KB) of
    utterance i or of its planted copy."""
    i, how = spec
    start = time.perf_counter()
    x = utterance(i)
    x = x if how is None else transformed(x, how)
    made = time.perf_counter()
    f = fingerprint(to_pcm16(x))
    return (f, x.shape[0] / SR, made - start, time.perf_counter() - made,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, plant: int, workers: int, limit: int) -> dict:
    """One run over n utterances and plant copies per transform."""
    rng = np.random.default_rng(1)
    sources = rng.choice(n, size=(len(TRANSFORMS), plant), replace=False)
    specs = [(i, None) for i in range(n)] + [(int(i), how) for how, row in zip(TRANSFORMS, sources) for i in row]
    start = time.perf_counter()
    with worker_map(job, workers, len(specs), chunksize=64) as run:
        done = list(run(specs))
    wall = time.perf_counter() - start
    prints = [d[0] for d in done]
    generate, analyse = sum(d[2] for d in done), sum(d[3] for d in done)
    after_prints = rss_mb()
    start = time.perf_counter()
    index = inverted_index(prints)
    indexed = time.perf_counter()
    found = candidates(index, limit=limit)
    counted = time.perf_counter()
    hits = matches(index, found)
    matched = time.perf_counter()
    planted = {(int(i), n + t * plant + j): how for t, (how, row) in enumerate(zip(TRANSFORMS, sources))
               for j, i in enumerate(row)}
    pairs = {(m.a, m.b) for m in hits}
    missed = {how: sum(1 for pair, h in planted.items() if h == how and pair not in pairs) for how in TRANSFORMS}
    false = [m for m in hits if (m.a, m.b) not in planted]
    fraction = {(m.a, m.b): m.fraction for m in matches(index, found, min_fraction=0.0)}  # every candidate's
    lowest = {how: min(fraction.get(pair, 0.0) for pair, h in planted.items() if h == how) for how in TRANSFORMS}
    hashes = sum(len(f) for f in prints)
    return {
        "utterances": n, "files": len(prints), "planted": len(planted), "workers": workers, "cpus": os.cpu_count(),
        "audio_hours": round(sum(d[1] for d in done) / 3600, 1), "hashes": hashes,
        "hashes_per_file": round(hashes / len(prints), 1),
        "hashes_stop_listed": round(1 - int(index.indexed.sum()) / max(hashes, 1), 3),
        "generate_ms_per_file": round(1000 * generate / len(prints), 2),
        "fingerprint_ms_per_file": round(1000 * analyse / len(prints), 2),
        "fingerprint_s": round(analyse, 1), "generate_and_fingerprint_wall_s": round(wall, 1),
        "index_s": round(indexed - start, 2), "votes_s": round(counted - indexed, 2),
        "match_s": round(matched - counted, 2), "votes": found.counted, "vote_parts": found.parts,
        "part_votes": limit, "candidates": int(found.pairs.shape[0]),
        "peak_rss_mb_fingerprints_held": round(after_prints, 1), "peak_rss_mb": round(rss_mb(), 1),
        "worker_peak_rss_mb": round(max(d[4] for d in done) / 1024, 1),
        "missed_per_transform": missed, "false_negative_rate": round(sum(missed.values()) / max(len(planted), 1), 4),
        "false_positive_pairs": len(false), "false_positive_rate": len(false) / (len(prints) * (len(prints) - 1) / 2),
        "false_positive_examples": [(m.a, m.b, m.matches, m.fraction) for m in false[:5]],
        "lowest_planted_fraction": lowest,
        "highest_unplanted_fraction": max((f for pair, f in fraction.items() if pair not in planted), default=0.0),
        "load_average": [round(v, 2) for v in os.getloadavg()]}


def row(r: dict) -> str:
    """One markdown table row of a run."""
    found = r["planted"] - sum(r["missed_per_transform"].values())
    return (f"| {r['utterances']:,} + {r['planted']} | {r['audio_hours']} h | {r['hashes'] / 1e6:.1f} M "
            f"({r['hashes_stop_listed']:.0%}) | {r['generate_ms_per_file']} ms | {r['fingerprint_ms_per_file']} ms, "
            f"{r['fingerprint_s']:.0f} s | {r['generate_and_fingerprint_wall_s']:.0f} s | {r['index_s']} s | "
            f"{r['votes_s']} s | {r['match_s']} s | {r['votes'] / 1e6:.1f} M ({r['vote_parts']}) | "
            f"{r['peak_rss_mb_fingerprints_held']:.0f} / {r['peak_rss_mb']:.0f} MB | {r['worker_peak_rss_mb']:.0f} MB "
            f"| {found} / {r['planted']} | {r['false_positive_pairs']} | {min(r['lowest_planted_fraction'].values()):.3f} "
            f"/ {r['highest_unplanted_fraction']:.3f} |")


HEADER = ("| files (+ planted copies) | audio | hashes (stop-listed) | generate per file | fingerprint per file, total "
          "(CPU) | generate + fingerprint wall (workers) | index | count votes | match | votes (parts) | peak RSS: "
          "fingerprints held / after matching | worker peak RSS | planted copies found | false positives | "
          "fraction: lowest planted / highest other |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    """Run each N in its own process (its own peak RSS) and print the table; with --json one N here."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default="5000,20000,50000", help="utterances, comma-separated for several runs")
    p.add_argument("--plant", type=int, default=100, help="planted copies per transform")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--part-votes", type=int, default=PART_VOTES, help="votes counted at a time")
    p.add_argument("--json", action="store_true", help="run the one N in this process and print its JSON line")
    args = p.parse_args()
    sizes = [int(v) for v in args.n.split(",")]
    if args.json:
        print(json.dumps(measure(sizes[0], args.plant, args.workers, args.part_votes)), flush=True)
        return
    runs = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--n", str(n), "--plant", str(args.plant), "--workers",
                              str(args.workers), "--part-votes", str(args.part_votes), "--json"],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(out.strip(), flush=True)
    print(f"\n{HEADER}")
    for r in runs:
        print(row(r))


if __name__ == "__main__":
    main()
