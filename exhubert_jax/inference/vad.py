"""Speech segments from Silero VAD, streamed: its ONNX model ships inside the silero-vad package and runs offline.

Silero VAD (a small neural detector, maintained, MIT) was chosen over webrtcvad (a GMM detector last released in
2017 as a source distribution that needs a C compiler) for its robustness to noise and its install from the
package index alone; it runs in onnxruntime, which the ONNX export needs anyway.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from exhubert_jax.data.audio import SAMPLE_RATE

FRAME = 512  # samples per VAD step at 16 kHz (what the Silero model takes)
MIN_SILENCE_MS = 300  # a pause at least this long ends a segment
SPEECH_PAD_MS = 30
MAX_SEGMENT_S = 30.0  # longer speech is cut here, so memory holds at most this much audio


def detector(min_silence_ms: int = MIN_SILENCE_MS):
    """A fresh streaming Silero VAD (its own state) on the packaged ONNX model."""
    from silero_vad import VADIterator, load_silero_vad

    return VADIterator(load_silero_vad(onnx=True), sampling_rate=SAMPLE_RATE, min_silence_duration_ms=min_silence_ms,
                       speech_pad_ms=SPEECH_PAD_MS)


def speech_segments(blocks: Iterator[np.ndarray], max_segment_s: float = MAX_SEGMENT_S,
                    min_silence_ms: int = MIN_SILENCE_MS) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start sample, end sample, samples) of every speech segment, then (total, total, empty) to give the length."""
    import torch

    vad = detector(min_silence_ms)
    max_len, back = int(max_segment_s * SAMPLE_RATE), int(SPEECH_PAD_MS * SAMPLE_RATE / 1000) + 2 * FRAME
    buffer, offset, pos, start = np.zeros(0, np.float32), 0, 0, None
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while pos + FRAME <= offset + len(buffer):
            event = vad(torch.from_numpy(buffer[pos - offset:pos - offset + FRAME].copy())) or {}
            pos += FRAME
            if "start" in event:
                start = max(offset, int(event["start"]))
            if start is not None and ("end" in event or pos - start >= max_len):
                end = min(pos, int(event["end"])) if "end" in event else pos
                yield start, end, buffer[start - offset:end - offset]
                start = None if "end" in event else pos
        keep = max(0, (start if start is not None else pos - back) - offset)
        buffer, offset = buffer[keep:], offset + keep
    total = offset + len(buffer)
    if start is not None and total > start:
        yield start, total, buffer[start - offset:]
    yield total, total, np.zeros(0, np.float32)
