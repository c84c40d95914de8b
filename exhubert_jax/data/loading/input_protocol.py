"""The model card's input protocol, computed as transformers' Wav2Vec2FeatureExtractor computes it.

The ExHuBERT card calls `Wav2Vec2FeatureExtractor.from_pretrained("facebook/hubert-base-ls960")` with
`padding="max_length", max_length=48000` and no `truncation`, and passes no attention mask to the model. So a clip
is zero-padded to 3 s, a longer clip stays whole (padding to max_length never truncates), and the model averages
over every frame, padding included. With `do_normalize`, the extractor normalises over the clip when it returns an
attention mask and over the padded vector otherwise. That extractor's preprocessor_config.json could not be read
here: DEFAULT assumes do_normalize=True and return_attention_mask=False (what HuBERT/wav2vec 2.0 base extractors
ship); pass the real file with CardProtocol.from_file to use its values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.errors import DataError

CARD_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class CardProtocol:
    """What the card's feature-extractor call does: pad to max_length (never crop), then maybe normalise."""

    max_length: int = int(CARD_SECONDS * SAMPLE_RATE)
    do_normalize: bool = True
    return_attention_mask: bool = False
    padding_value: float = 0.0

    @classmethod
    def from_file(cls, path: str | Path, max_length: int | None = None) -> "CardProtocol":
        """The protocol a preprocessor_config.json describes (16 kHz mono Wav2Vec2FeatureExtractor only)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read a preprocessor config ({type(e).__name__}: {e})") from None
        if data.get("sampling_rate", SAMPLE_RATE) != SAMPLE_RATE or data.get("feature_size", 1) != 1:
            raise DataError(f"{path}: the card protocol needs a 16 kHz mono extractor, got sampling_rate "
                            f"{data.get('sampling_rate')}, feature_size {data.get('feature_size')}")
        return cls(max_length=max_length or cls.max_length, do_normalize=bool(data.get("do_normalize", True)),
                   return_attention_mask=bool(data.get("return_attention_mask", False)),
                   padding_value=float(data.get("padding_value", 0.0)))

    def width(self, length: int) -> int:
        """Samples the model sees for a clip of `length` samples."""
        return max(int(length), self.max_length)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """The input_values the card's call gives for one clip (float32)."""
        wave = np.asarray(wave, np.float32)
        padded = np.full(self.width(len(wave)), self.padding_value, np.float32)
        padded[:len(wave)] = wave
        if not self.do_normalize:
            return padded
        part = wave if self.return_attention_mask else padded
        out = (padded - part.mean()) / np.sqrt(part.var() + 1e-7)
        if self.return_attention_mask:
            out[len(wave):] = self.padding_value
        return out.astype(np.float32)


DEFAULT = CardProtocol()
INPUT_MODES = ("masked", "card")


def feature_extractor_config(input_mode: str = "masked", card: CardProtocol = DEFAULT) -> dict:
    """preprocessor_config.json of the Wav2Vec2FeatureExtractor that feeds a clip as `input_mode` does: masked
    normalises over the clip and passes an attention mask; card takes the card extractor's settings (it does not
    pad a lone clip to max_length: transformers pads only batches, or when asked)."""
    if input_mode not in INPUT_MODES:
        raise DataError(f"input protocol must be one of {', '.join(INPUT_MODES)}, got {input_mode!r}")
    masked = input_mode == "masked"
    return {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": SAMPLE_RATE,
            "padding_side": "right", "padding_value": 0.0 if masked else card.padding_value,
            "do_normalize": True if masked else card.do_normalize,
            "return_attention_mask": True if masked else card.return_attention_mask}
