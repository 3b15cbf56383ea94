"""Evaluation metrics as small named pieces: each takes batches of (x, x_hat, ids) and reports numbers.

``discotok eval`` runs a list of them over the whole set; adding a metric is adding a class
with ``update(batch)`` and ``compute() -> dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from discotok.metrics.codebook import CodebookUsage
from discotok.metrics.fid import FEATURE_DIM, FeatureStats, features_of, frechet_distance_of
from discotok.metrics.image import psnr, ssim


@dataclass
class EvalBatch:
    """Originals and reconstructions in [-1, 1], (B, 3, H, W), and the ids they went through."""

    x: Tensor
    x_hat: Tensor
    ids: Tensor


class Metric(Protocol):
    name: str

    def update(self, batch: EvalBatch) -> None:
        """Take one batch."""

    def compute(self) -> dict[str, float]:
        """The figures over every batch taken."""


class _PerImageMean:
    """Mean over images of a per-image score."""

    name = ""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def score(self, batch: EvalBatch) -> Tensor:
        raise NotImplementedError

    def update(self, batch: EvalBatch) -> None:
        values = self.score(batch).double()
        self.total += float(values.sum())
        self.count += values.numel()

    def compute(self) -> dict[str, float]:
        return {self.name: self.total / max(self.count, 1)}


class PSNRMetric(_PerImageMean):
    """PSNR in dB per image (data range 2 on [-1, 1]), averaged over images."""

    name = "psnr"

    def score(self, batch: EvalBatch) -> Tensor:
        return psnr(batch.x_hat, batch.x)


class SSIMMetric(_PerImageMean):
    """SSIM per image (Gaussian window 11, sigma 1.5, on [0, 1]), averaged over images."""

    name = "ssim"

    def score(self, batch: EvalBatch) -> Tensor:
        return ssim(batch.x_hat, batch.x)


class LPIPSMetric(_PerImageMean):
    """LPIPS distance per image from ``net(x_hat, x) -> (B,)``, averaged over images."""

    name = "lpips"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def score(self, batch: EvalBatch) -> Tensor:
        device = next(self.net.parameters()).device
        with torch.inference_mode():
            return self.net(batch.x_hat.to(device), batch.x.to(device)).reshape(-1).cpu()


class FrechetMetric:
    """Fréchet distance between InceptionV3 features of the reconstructions and ``reference``
    (features of the originals): rFID, or pFID when the reconstructions come from perturbed ids."""

    def __init__(self, net: nn.Module, reference: FeatureStats, name: str = "rfid") -> None:
        self.name, self.net, self.reference = name, net, reference
        self.stats = FeatureStats(FEATURE_DIM)

    def update(self, batch: EvalBatch) -> None:
        self.stats.update(features_of(self.net, batch.x_hat))

    def compute(self) -> dict[str, float]:
        return {self.name: frechet_distance_of(self.reference, self.stats)}


class CodebookMetric:
    """Fraction of the codebook used and perplexity of the id histogram over the whole set
    (per level, averaged, for residual ids)."""

    name = "codebook"

    def __init__(self, codebook_size: int) -> None:
        self.usage = CodebookUsage(codebook_size)

    def update(self, batch: EvalBatch) -> None:
        self.usage.update(batch.ids)

    def compute(self) -> dict[str, float]:
        figures = self.usage.compute()
        return {"codebook_usage": figures["usage"], "perplexity": figures["perplexity"]}
