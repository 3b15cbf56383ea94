"""8-bit mu-law (G.711-style companding, torchaudio) at the model's rate: a ceiling reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchaudio.functional import mu_law_decoding, mu_law_encoding

from discotok.eval.baselines.contract import Coded, Point

BITS = 8


class MuLaw:
    """Every sample as one 8-bit mu-law code: 8 bits x sample rate x channels, no header."""

    name = "mulaw"
    title = "8-bit mu-law"
    setting_name = None

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def points(self, targets: Sequence[float]) -> list[Point]:
        return [Point(self.title)]

    def code(self, item: np.ndarray, point: Point) -> Coded:
        codes = mu_law_encoding(torch.from_numpy(item).clamp(-1, 1), 2**BITS)
        return Coded(mu_law_decoding(codes, 2**BITS).numpy(), float(BITS * item.size))

    def lowest(self, item: np.ndarray) -> Coded:
        return self.code(item, Point(self.title))

    def describe(self) -> str:
        return (f"{BITS}-bit mu-law (torchaudio mu_law_encoding / mu_law_decoding, mu = 255) of every sample at "
                f"{self.sample_rate} Hz: {BITS} bits x rate x channels, no header; a ceiling reference, not a "
                "low-rate codec")
