"""Loader throughput: audio-seconds per second from prepared data to padded, device-ready batches, for the
earlier record format (a frozen copy of its writer and reader, below) and the TFDS datasets, on the same
examples in one run; then the time the train loop waits for data per step, with and without prefetch, against a
simulated device step.

    python bench/loader.py --emodb /path/to/emodb [--generated 1500] [--step-ms 100]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import peak_rss_mb  # noqa: E402
from exhubert_jax.data.audio import SAMPLE_RATE  # noqa: E402
from exhubert_jax.data.loading.batching import eval_batches, train_batches  # noqa: E402
from exhubert_jax.data.loading.dataset import open_prepared  # noqa: E402
from exhubert_jax.data.loading.prefetch import Prefetch  # noqa: E402
from exhubert_jax.data.prepare.corpus import prepare_corpus  # noqa: E402

# ------------------------------------------------------------------ the earlier format, frozen for comparison
_MAGIC, _HEAD = b"EXR1", struct.Struct("<4sI")


def old_encode(header: dict, pcm: np.ndarray) -> bytes:
    """One record of the earlier format: magic, header length, JSON header, int16 little-endian PCM."""
    head = json.dumps(header, sort_keys=True).encode()
    return _HEAD.pack(_MAGIC, len(head)) + head + np.ascontiguousarray(pcm, dtype="<i2").tobytes()


def old_decode(buf: bytes) -> tuple[dict, np.ndarray]:
    """(header, int16 PCM) of one earlier-format record."""
    magic, n = _HEAD.unpack_from(buf)
    assert magic == _MAGIC
    start = _HEAD.size + n
    return json.loads(buf[_HEAD.size:start]), np.frombuffer(buf, dtype="<i2", offset=start)


class OldSplit:
    """The earlier reader: uncompressed array_record + an index of lengths, batched raw reads."""

    def __init__(self, path: Path, num_samples: np.ndarray, corpus: str):
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        self.corpus, self.num_samples = corpus, num_samples
        self._source = ArrayRecordDataSource([str(path)])

    def __len__(self) -> int:
        return len(self.num_samples)

    def read_pcm(self, indices):
        return [old_decode(b) for b in self._source.__getitems__([int(i) for i in indices])]


def write_old(split, path: Path) -> OldSplit:
    """The same examples as a prepared split, in the earlier format."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1,uncompressed")
    for start in range(0, len(split), 64):
        for fields, pcm in split.read_pcm(range(start, min(start + 64, len(split)))):
            writer.write(old_encode(fields, pcm))
    writer.close()
    return OldSplit(path, split.num_samples, split.corpus)


# ------------------------------------------------------------------ corpora


def generated_corpus(root: Path, n: int, seed: int = 0) -> Path:
    """n wav files of shaped noise, 1-8 s at 16 kHz, 20 speakers, 4 labels, and their manifest."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rel = f"wav/{i:05d}.wav"
        (root / "wav").mkdir(parents=True, exist_ok=True)
        x = np.convolve(rng.standard_normal(int(rng.uniform(1.0, 8.0) * SAMPLE_RATE)), np.hanning(16), "same")
        sf.write(str(root / rel), (0.05 * x).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        rows.append(f"{rel},{('angry', 'sad', 'neutral', 'happy')[i % 4]},spk{i % 20:02d}")
    (root / "manifest.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    return root / "manifest.csv"


# ------------------------------------------------------------------ measurements


def device_ready(batch) -> None:
    """What the train step receives: the arrays on the default device."""
    import jax

    arrays = jax.device_put((batch.input_values, batch.attention_mask, batch.labels, batch.weights))
    jax.block_until_ready(arrays)


def one_pass(make_batches) -> tuple[float, float, float]:
    """(audio seconds, wall seconds, CPU seconds of this process) of one pass to device-ready batches."""
    seconds, wall, cpu = 0.0, time.perf_counter(), time.process_time()
    for batch in make_batches():
        device_ready(batch)
        seconds += batch.n_seconds
    return seconds, time.perf_counter() - wall, time.process_time() - cpu


def rates(passes: dict, repeats: int) -> dict:
    """{name: audio-s per wall second (median, min, max) and per CPU second (median)}; the passes alternate
    (A B B A ...), so load from other processes and cache effects fall on every side alike."""
    runs = {name: [] for name in passes}
    for make in passes.values():  # one untimed pass each: both files in the page cache
        one_pass(make)
    for r in range(repeats):
        for name in (list(passes) if r % 2 == 0 else list(passes)[::-1]):  # A B, B A, ...: no side always first
            runs[name].append(one_pass(passes[name]))
    out = {}
    for name, rs in runs.items():
        wall = [s / w for s, w, _ in rs]
        out[name] = {"median": round(statistics.median(wall)), "min": round(min(wall)), "max": round(max(wall)),
                     "per_cpu_s": round(statistics.median(s / c for s, _, c in rs))}
    return out


def waits(split, batch_size: int, max_seconds: float, step_s: float, steps: int, depth: int) -> dict:
    """Wait for data per step (ms) with a device step of step_s simulated by sleeping (which, like JAX waiting for
    the device, does not hold the GIL)."""
    stream = Prefetch(train_batches(split, batch_size, max_seconds, seed=0), depth=depth)
    for _ in range(steps):
        device_ready(next(stream))
        time.sleep(step_s)
    stream.close()
    w = np.asarray(stream.waits[1:]) * 1000  # the first includes starting the thread
    return {"median_ms": round(float(np.median(w)), 3), "p95_ms": round(float(np.percentile(w, 95)), 3),
            "max_ms": round(float(w.max()), 3), "steps": len(w)}


def bench_corpus(name: str, split, tmp: Path, args) -> dict:
    old = write_old(split, tmp / f"{name}.old.array_record")
    for i in range(0, len(split), max(1, len(split) // 20)):  # same content on both sides
        (fo, po), (fn, pn) = old.read_pcm([i])[0], split.read_pcm([i])[0]
        assert np.array_equal(po, pn) and fo["label"] == fn["label"], i
    n_batches = -(-len(split) // args.batch_size)
    out = {"examples": len(split), "audio_seconds": round(float(split.num_samples.sum()) / SAMPLE_RATE, 1)}
    sides = {"old": old, "tfds": split}
    out["train_audio_s_per_s"] = rates(
        {side: (lambda s=s: (b for b, _ in zip(train_batches(s, args.batch_size, args.max_seconds, 0),
                                               range(n_batches)))) for side, s in sides.items()}, args.repeats)
    out["eval_audio_s_per_s"] = rates(
        {side: (lambda s=s: eval_batches(s, args.batch_size, args.max_seconds)) for side, s in sides.items()},
        args.repeats)
    step_s = args.step_ms / 1000
    out["wait_per_step_no_prefetch"] = waits(split, args.batch_size, args.max_seconds, step_s, args.steps, 0)
    out["wait_per_step_prefetch_2"] = waits(split, args.batch_size, args.max_seconds, step_s, args.steps, 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--emodb", help="an EMO-DB folder (e.g. a subset of it); skipped when not given")
    p.add_argument("--generated", type=int, default=1500, help="files in the generated corpus (0: none)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--step-ms", type=float, default=100.0, help="simulated device step (ms)")
    p.add_argument("--steps", type=int, default=60, help="steps for the wait measurement")
    p.add_argument("--workdir", help="where to prepare (default: a temporary folder)")
    args = p.parse_args(argv)
    quiet = dict(progress=False, log=lambda m: None)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.workdir or scratch)
        result = {"batch_size": args.batch_size, "max_seconds": args.max_seconds, "step_ms": args.step_ms}
        corpora = {}
        if args.emodb:
            prepare_corpus("emodb", args.emodb, tmp / "prepared", **quiet)
            corpora["emodb"] = open_prepared("emodb", tmp / "prepared").split("train")
        if args.generated:
            manifest = generated_corpus(tmp / "generated", args.generated)
            start = time.perf_counter()
            summary = prepare_corpus("generated", out=tmp / "prepared", manifest=manifest, **quiet)
            result["generated_prepare_s"] = round(time.perf_counter() - start, 2)
            result["generated_prepare_files"] = summary["n_examples"]
            corpora["generated"] = open_prepared("generated", tmp / "prepared").split("train")
        for name, split in corpora.items():
            result[name] = bench_corpus(name, split, tmp, args)
        result["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
