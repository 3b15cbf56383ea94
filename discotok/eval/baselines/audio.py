"""Audio baselines of ``discotok eval``: Opus at the tokenizers' bits per second, 8-bit mu-law as a ceiling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from discotok.eval.baselines.contract import Comparison, losses, run_codecs
from discotok.eval.baselines.mulaw import MuLaw
from discotok.eval.baselines.opus import Opus
from discotok.eval.metrics import audio_metrics

if TYPE_CHECKING:
    from discotok.eval.protocol import EvalSet
    from discotok.eval.options import EvalOptions

COMPARISON = Comparison("bits_per_second", "bits/s", "mel_distance", "mel distance", "{:.3f}", higher_is_better=False)


class AudioItems:
    """Zero-padded clips (B, C, T) with their lengths as (C, T_i) arrays, and back; rates per second."""

    rate_key = "bits_per_second"
    unit = "bits/s"

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def split(self, x: Tensor, extra: dict) -> list[np.ndarray]:
        return [clip[:, :n].float().numpy() for clip, n in zip(x, extra["lengths"].tolist(), strict=True)]

    def join(self, items: list[np.ndarray], x: Tensor) -> Tensor:
        out = torch.zeros_like(x, dtype=torch.float32)
        for b, item in enumerate(items):
            out[b, :, : item.shape[-1]] = torch.from_numpy(item)
        return out

    def size(self, item: np.ndarray) -> float:
        return item.shape[-1] / self.sample_rate

    def rate(self, bits: float, header_bits: float, size: float) -> dict[str, float]:
        return {"bits_per_second": bits / size, "bits_per_second_with_header": (bits + header_bits) / size}


def audio_baselines(data: EvalSet, results: list[dict], opts: EvalOptions, nets: dict) -> dict[str, Any]:
    """Opus at every tokenizer point's bits per second and 8-bit mu-law, scored with eval's audio metrics."""
    rate = data.reader.sample_rate
    codecs = [Opus(rate, data.reader.channels), MuLaw(rate)]
    targets = sorted({r["bits_per_second"] for r in results})
    section = run_codecs(data, codecs, targets, AudioItems(rate), lambda: audio_metrics(rate, opts.pesq_stoi),
                         opts.progress)
    protocol = {codec.name: codec.describe() for codec in codecs}
    protocol["metrics"] = "as for the tokenizers, over each clip's valid samples"
    protocol["comparison"] = ("a tokenizer point loses when a codec row spends no more payload bits per second "
                              "(without the container) and has a lower mel distance")
    return {"protocol": protocol, **section, "loses_to": losses(results, section["results"], COMPARISON)}
