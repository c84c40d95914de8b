"""Emotion over time: class probabilities of sliding windows over a recording, streamed from disk block by block.

A file is decoded and resampled to 16 kHz in blocks (soundfile + soxr's streaming resampler), so memory holds one
block, one window and one batch, whatever the length. Windows start every `hop` seconds; when the hop leaves a
tail, one last window ends at the end of the file. Windows quieter than SILENCE_DBFS are marked as silence and
never classified. In the others, pauses (20 ms frames quieter than SILENCE_DBFS) are cut out, and the voiced parts
are normalised and padded to the bucket shapes of `evaluate.py --audio`, so a long recording compiles no more shapes
than a folder of clips.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from exhubert_jax.data.audio import MIN_SAMPLES, SAMPLE_RATE, check_audio_file
from exhubert_jax.data.errors import AudioError

WINDOW_S, HOP_S = 3.0, 1.0
BLOCK_S = 30.0  # seconds decoded at a time
SILENCE_DBFS = -60.0  # RMS of a window below this (relative to full scale): silence
FRAME = 320  # samples of one model frame (20 ms): the grain at which pauses are cut out of a window
SILENCE = "silence"  # a fixed window below SILENCE_DBFS
NON_SPEECH = "non-speech"  # a span between the VAD's speech segments
SEGMENTS = ("fixed", "vad")


class TooShort(Exception):
    """A recording shorter than one window (args: its length in samples)."""


def _decoded_blocks(path: Path, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 block, sample rate) from soundfile; formats it cannot open are decoded whole by load_audio."""
    import soundfile as sf

    try:
        handle = sf.SoundFile(str(path))
    except Exception:  # noqa: BLE001 - not a soundfile format (m4a, ...): the generic decoder, all at once
        from exhubert_jax.data.audio import load_audio

        yield load_audio(path, SAMPLE_RATE), SAMPLE_RATE
        return
    with handle:
        step = max(1, int(block_s * handle.samplerate))
        while True:
            block = handle.read(step, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block.mean(axis=1), handle.samplerate


def stream_audio(path: str | Path, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks of a file; AudioError names the file and the problem (missing, truncated: the checks
    load_audio makes too, in check_audio_file; unreadable, non-finite)."""
    import soxr

    path = check_audio_file(path)
    resampler, seconds = None, 0.0
    try:
        for block, rate in _decoded_blocks(path, block_s):
            if not np.isfinite(block).all():
                raise AudioError(str(path), f"contains NaN or Inf samples (after {seconds:.1f} s)")
            seconds += len(block) / rate
            if rate != SAMPLE_RATE:
                resampler = resampler or soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
                block = resampler.resample_chunk(block)
            yield np.ascontiguousarray(block, np.float32)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder failing mid-file: damaged or truncated
        raise AudioError(str(path), f"unreadable or truncated after {seconds:.1f} s ({type(e).__name__}: {e})") from None


def windows(blocks: Iterator[np.ndarray], window: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, samples) of every window; holds at most one window plus one block."""
    buffer, offset, next_start, last_end = np.zeros(0, np.float32), 0, 0, 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while next_start + window <= offset + len(buffer):
            yield next_start, buffer[next_start - offset:next_start - offset + window]
            last_end, next_start = next_start + window, next_start + hop
        keep = max(0, min(next_start - offset, len(buffer) - window))  # the tail a final window may need
        buffer, offset = buffer[keep:], offset + keep
    total = offset + len(buffer)
    if last_end and last_end < total:
        yield total - window, buffer[len(buffer) - window:]
    if not last_end:
        raise TooShort(total)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level relative to full scale (-inf for digital silence)."""
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def voiced_parts(samples: np.ndarray) -> list[np.ndarray]:
    """The runs of 20 ms frames at or above SILENCE_DBFS that are at least MIN_SAMPLES long: what lies between pauses."""
    starts = np.arange(0, len(samples), FRAME)
    sizes = np.diff(np.append(starts, len(samples)))
    power = np.add.reduceat(np.square(samples, dtype=np.float64), starts) / sizes
    loud = np.concatenate([[0], power >= 10 ** (SILENCE_DBFS / 10), [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(loud)) * FRAME  # sample offsets where a voiced run starts, then ends
    parts = (samples[a:min(b, len(samples))] for a, b in zip(edges[::2], edges[1::2]))
    return [p for p in parts if len(p) >= MIN_SAMPLES]


def check_window(window_s: float, hop_s: float) -> tuple[int, int]:
    """(window, hop) in samples; ValueError naming the flag when either is unusable."""
    window, hop = int(round(window_s * SAMPLE_RATE)), int(round(hop_s * SAMPLE_RATE))
    if window < MIN_SAMPLES:
        raise ValueError(f"--window {window_s} is shorter than one HuBERT frame ({MIN_SAMPLES / SAMPLE_RATE} s)")
    if hop <= 0:
        raise ValueError(f"--hop must be positive, got {hop_s}")
    return window, hop


def file_windows(path: str | Path, window: int, hop: int) -> Iterator[tuple[float, float, np.ndarray | None]]:
    """(start s, end s, samples or None for silence) of one file; AudioError when it is shorter than one window or
    holds silence only."""
    voiced = 0
    try:
        for start, samples in windows(stream_audio(path), window, hop):
            quiet = rms_dbfs(samples) < SILENCE_DBFS
            voiced += not quiet
            yield start / SAMPLE_RATE, (start + window) / SAMPLE_RATE, None if quiet else samples
    except TooShort as e:
        raise AudioError(str(path), f"shorter than one window ({e.args[0] / SAMPLE_RATE:.2f} s < "
                                    f"{window / SAMPLE_RATE:g} s); use a shorter --window") from None
    if not voiced:
        raise AudioError(str(path), f"silence only (every window below {SILENCE_DBFS:g} dBFS)")


def vad_spans(path: str | Path) -> Iterator[tuple[float, float, np.ndarray | None]]:
    """(start s, end s, samples or None for non-speech) cut at speech pauses by the VAD; AudioError when the file
    holds no speech."""
    from exhubert_jax.inference.vad import speech_segments

    previous, spoken = 0, 0
    for start, end, samples in speech_segments(stream_audio(path)):
        if start > previous:
            yield previous / SAMPLE_RATE, start / SAMPLE_RATE, None
        if end > start:
            spoken += 1
            yield start / SAMPLE_RATE, end / SAMPLE_RATE, samples
        previous = max(previous, end)
    if not spoken:
        raise AudioError(str(path), "no speech found by the voice-activity detector")


def classify(predict, params, spans, class_names: Sequence[str], batch_size: int, buckets: Sequence[int],
             chunk_samples: int, marker: str = SILENCE) -> list[dict]:
    """One row per span: start, end, probabilities and top class (`marker` and None for spans without samples, or
    without one frame's worth between pauses).
    A span's voiced parts (its pauses cut out: the model was trained on single utterances, never on a pause inside
    its input) are cut into chunks of at most chunk_samples, predicted in batches; its logits are the chunks' mean
    weighted by length, as evaluate.py --audio does for a file."""
    from exhubert_jax.evaluation.scoring import _length_batches, chunk_audio, softmax

    rows: list[dict] = []
    pending: list[tuple[int, np.ndarray]] = []
    sums = np.zeros((0, len(class_names)))
    weights = np.zeros(0)

    def flush(final: bool = False):
        nonlocal sums, weights
        sums = np.concatenate([sums, np.zeros((len(rows) - len(sums), len(class_names)))])
        weights = np.concatenate([weights, np.zeros(len(rows) - len(weights))])
        while len(pending) >= batch_size or (final and pending):
            group, pending[:] = pending[:batch_size], pending[batch_size:]
            for owners, x, mask in _length_batches(group, batch_size, buckets):
                out = predict(params, x, mask)
                for r, owner in enumerate(owners):
                    sums[owner] += mask[r].sum() * out[r]
                    weights[owner] += mask[r].sum()

    for start, end, samples in spans:
        rows.append({"start": start, "end": end, "probabilities": None, "top": marker})
        if samples is not None and len(samples) >= MIN_SAMPLES:  # shorter ones give the model no frame: marked
            pending.extend((len(rows) - 1, piece) for part in voiced_parts(samples)
                           for piece in chunk_audio(part, chunk_samples))
        if len(pending) >= batch_size:
            flush()
    flush(final=True)
    for i in np.flatnonzero(weights):
        probs = softmax(sums[i] / weights[i])
        rows[i].update(probabilities={n: float(p) for n, p in zip(class_names, probs)},
                       top=class_names[int(probs.argmax())])
    return rows


def chunk_seconds_for(checkpoint: str | Path, chunk_seconds: float) -> float:
    """The chunk length a timeline feeds: the crop length the checkpoint's run trained on (its run.json's
    max_seconds) when that is shorter than chunk_seconds, else chunk_seconds."""
    from exhubert_jax.process.run_folders import read_run

    trained = read_run(Path(checkpoint).parent).get("options", {}).get("max_seconds")
    return min(chunk_seconds, float(trained)) if trained else chunk_seconds


def output_stems(files: Sequence[Path], root: Path, out_dir: Path) -> list[Path]:
    """OUT/<each file's path under the input folder, without its suffix>; files that would share one (a.wav and
    a.flac) keep their suffix as _wav, _flac."""
    relative = [f.relative_to(root) if root.is_dir() else Path(f.name) for f in files]
    bare = [r.with_suffix("") for r in relative]
    return [out_dir / (b if bare.count(b) == 1 else b.with_name(f"{b.name}_{r.suffix[1:]}"))
            for r, b in zip(relative, bare)]


def timelines(model, params, path_or_dir: str | Path, out_dir: str | Path, *, window_s: float = WINDOW_S,
              hop_s: float = HOP_S, segments: str = "fixed", batch_size: int = 8, chunk_seconds: float = 3.0,
              predictor=None, progress: bool = False) -> list[dict]:
    """Write STEM.csv/.json/.png per file under out_dir, as one set each (timeline_report.write_timeline): a summary
    per file, or {'file', 'error'} for a bad one (the others still run; a full disk stops all). segments: "fixed"
    windows of window_s every hop_s, or "vad" speech segments. Chunks are padded to the buckets of `evaluate.py
    --audio --chunk-seconds chunk_seconds`, so both compile the same shapes; with fixed windows, to the one bucket a
    whole window takes, so the parts between pauses compile no other. `progress`: show the seconds of audio done on
    stderr (process.progress)."""
    from exhubert_jax.data.loading.batching import bucket_length, default_buckets
    from exhubert_jax.evaluation.predict import Predictor
    from exhubert_jax.evaluation.scoring import input_files, model_class_names
    from exhubert_jax.inference.timeline_report import write_timeline
    from exhubert_jax.process.progress import progress as display

    window, hop = check_window(window_s, hop_s)
    predict, names, root = predictor or Predictor(model), model_class_names(model.config), Path(path_or_dir)
    buckets, marker = default_buckets(chunk_seconds), SILENCE if segments == "fixed" else NON_SPEECH
    if segments == "fixed":
        buckets = (bucket_length(min(window, max(buckets)), buckets),)
    results, files = [], input_files(path_or_dir)
    lengths = [audio_seconds(f) for f in files] if progress else [None] * len(files)
    total = None if None in lengths else sum(lengths)
    bar = display(total, "timeline", "audio s", quiet=not progress)
    for f, stem, length in zip(files, output_stems(files, root, Path(out_dir)), lengths):
        spans = counted(file_windows(f, window, hop) if segments == "fixed" else vad_spans(f), bar, length)
        try:
            rows = classify(predict, params, spans, names, batch_size, buckets, max(buckets), marker)
        except AudioError as e:
            results.append({"file": str(f), "error": e.reason})
            continue
        meta = {"file": str(f), "segments": segments, **({"window_s": window_s, "hop_s": hop_s}
                                                          if segments == "fixed" else {})}
        written = write_timeline(rows, names, stem, meta, title=f.name)
        tops = [r["top"] for r in rows]
        results.append({"file": str(f), "duration": rows[-1]["end"], "windows": len(rows),
                        "silence_windows": tops.count(marker), "outputs": [str(p) for p in written],
                        "most_frequent": max(names, key=tops.count)})
    bar.close()
    return results


def audio_seconds(path: Path) -> float | None:
    """A file's length in seconds as its header gives it; None when soundfile cannot tell (m4a, a damaged file)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - a format soundfile does not open, or a bad file: reported when it is read
        return None
    return info.frames / info.samplerate if info.samplerate else None


def counted(spans: Iterator[tuple[float, float, np.ndarray | None]], bar,
            length: float | None) -> Iterator[tuple[float, float, np.ndarray | None]]:
    """The spans of one file, moving the progress bar to the second each one ends at; when the file is done (or
    fails), on to its length."""
    done = 0.0
    try:
        for start, end, samples in spans:
            bar.update(max(0.0, end - done))
            done = max(done, end)
            yield start, end, samples
    finally:
        if length:
            bar.update(max(0.0, length - done))
