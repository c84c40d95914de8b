"""One pass over a prepared split's audio: per utterance its path, speaker, PCM digest (the index's, else computed),
silence and clipping ratios and landmark fingerprint; per-example lengths, labels and source rates come from the
index without reading audio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from exhubert_jax.data.audit.fingerprints import Fingerprint, fingerprint
from exhubert_jax.data.loading.dataset import PreparedSplit
from exhubert_jax.data.prepare.plan import pcm_hash
from exhubert_jax.data.sources.corpora import base_name

CHUNK = 64  # utterances read and analysed at a time
WINDOW = 16  # chunks in flight
SILENCE_DBFS = -40.0  # a 20 ms frame quieter than this is silence
FRAME = 320  # 20 ms at 16 kHz
CLIP = 32767  # a sample at full scale (either sign) counts as clipped


@dataclass
class SplitScan:
    """What the audit knows of one split: per utterance path, speaker, digest, labels, seconds, silence ratio,
    clipping ratio, source rate (None: unknown) and fingerprint (None when not computed); whether the digests come
    from the index."""

    corpus: str
    split: str
    paths: list[str]
    speakers: list[str | None]
    digests: list[str]
    digests_recorded: bool
    labels: np.ndarray
    seconds: np.ndarray
    silence: np.ndarray
    clipping: np.ndarray
    source_rates: list[int | None]
    prints: list[Fingerprint | None]

    @property
    def base(self) -> str:
        """The corpus these folds (if any) belong to."""
        return base_name(self.corpus)

    def __len__(self) -> int:
        return len(self.paths)


def silence_ratio(pcm: np.ndarray) -> float:
    """The fraction of 20 ms frames whose RMS is below SILENCE_DBFS."""
    n = pcm.shape[0] // FRAME
    if not n:
        return 0.0
    frames = pcm[:n * FRAME].astype(np.float32).reshape(n, FRAME) / 32768.0
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return float(np.mean(rms < 10 ** (SILENCE_DBFS / 20)))


def clipping_ratio(pcm: np.ndarray) -> float:
    """The fraction of samples at full scale."""
    return float(np.mean(np.abs(pcm.astype(np.int32)) >= CLIP)) if pcm.shape[0] else 0.0


def analyse(pcms: list[np.ndarray]) -> list[tuple[str, float, float, Fingerprint]]:
    """(digest, silence ratio, clipping ratio, fingerprint) of each int16 waveform (a worker's unit of work)."""
    return [(pcm_hash(p), silence_ratio(p), clipping_ratio(p), fingerprint(p)) for p in pcms]


def chunks(split: PreparedSplit) -> Iterable[tuple[list[dict], list[np.ndarray]]]:
    """(fields, PCM) of the split's utterances, CHUNK at a time."""
    for start in range(0, len(split), CHUNK):
        read = split.read_pcm(range(start, min(len(split), start + CHUNK)))
        yield [f for f, _ in read], [np.array(p) for _, p in read]


def scan_split(split: PreparedSplit, run: Callable[[Iterable], Iterable], progress: Callable[[int], None]
               ) -> SplitScan:
    """Read one split's audio once, analysed through `run` (a map over chunks of PCM, in workers or not)."""
    fields: list[dict] = []
    results: list[tuple] = []
    window: list[list[np.ndarray]] = []
    for f, pcms in chunks(split):  # WINDOW chunks in flight at a time: the audio is never all in memory
        fields.extend(f)
        window.append(pcms)
        if len(window) == WINDOW or len(fields) == len(split):
            for analysed in run(window):
                results.extend(analysed)
                progress(len(analysed))
            window = []
    recorded = split.pcm_hashes is not None
    rates = [None] * len(split) if split.source_rates is None else [None if r is None else int(r)
                                                                    for r in split.source_rates]
    return SplitScan(split.corpus, split.name, [f["path"] for f in fields], [f["speaker"] for f in fields],
                     list(split.pcm_hashes) if recorded else [r[0] for r in results], recorded,
                     np.asarray(split.labels), np.asarray(split.durations, np.float64),
                     np.asarray([r[1] for r in results]), np.asarray([r[2] for r in results]), rates,
                     [r[3] for r in results])
