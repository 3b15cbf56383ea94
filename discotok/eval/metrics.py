"""Evaluation metrics as small named pieces: each takes batches of (x, x_hat, ids) and reports numbers.

``discotok eval`` runs a list of them over the whole set; adding a metric is adding a class
with ``update(batch)`` and ``compute() -> dict``. Image pieces: PSNR, SSIM, LPIPS
(``image_metrics``), Fréchet distances; audio pieces (``audio_metrics``): SI-SNR, mel and STFT
distances, PESQ and STOI, each over every clip's valid samples; the codebook piece serves both.
The classical baselines (``discotok.eval.baselines``) are scored with the same pieces.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from discotok.metrics import audio as audio_fns
from discotok.metrics.codebook import CodebookUsage, ResidualShares
from discotok.metrics.fid import FEATURE_DIM, FeatureStats, features_of, frechet_distance_of
from discotok.metrics.image import psnr, ssim


@dataclass
class EvalBatch:
    """Originals and reconstructions in [-1, 1] and the ids they went through.

    Images (B, 3, H, W), ids (B, N[, depth]). Audio: zero-padded waveforms (B, C, T) with each
    clip's ``lengths`` (B,) in samples and ``frames`` (B,): ids past a clip's frames are padding.
    ``latents`` (B, N, D): the quantizer's input, where a metric needs it (residual quantizers).
    ``x_hat`` is None for an encode-only tokenizer (only id metrics take such a batch).
    """

    x: Tensor
    x_hat: Tensor | None
    ids: Tensor
    lengths: Tensor | None = None
    frames: Tensor | None = None
    latents: Tensor | None = None

    def valid_ids(self) -> Tensor:
        """The ids of every item's valid frames, as one (1, total frames[, depth]) sequence (audio), else ``ids``."""
        if self.frames is None:
            return self.ids
        return torch.cat([ids[:n] for ids, n in zip(self.ids, self.frames.tolist())])[None]


class Metric(Protocol):
    name: str

    def update(self, batch: EvalBatch) -> None:
        """Take one batch."""

    def compute(self) -> dict[str, float]:
        """The figures over every batch taken."""


class _PerItemMean:
    """Mean over items (images, clips) of a per-item score."""

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


# PSNR of 8-bit rounding noise (variance LSB^2 / 12): no reconstruction is counted as closer than
# storing the image in 8 bits, so an exact copy (a flat image through a 1x1 thumbnail) is finite.
PSNR_CEILING_DB = 10 * math.log10(12 * 255**2)


class PSNRMetric(_PerItemMean):
    """PSNR in dB per image (data range 2 on [-1, 1]) at most ``PSNR_CEILING_DB``, averaged over images;
    ``psnr_at_ceiling`` counts the images that reached the ceiling (when any did)."""

    name = "psnr"

    def __init__(self) -> None:
        super().__init__()
        self.at_ceiling = 0

    def score(self, batch: EvalBatch) -> Tensor:
        values = psnr(batch.x_hat, batch.x)
        self.at_ceiling += int((values >= PSNR_CEILING_DB).sum())
        return values.clamp(max=PSNR_CEILING_DB)

    def compute(self) -> dict[str, float]:
        return {**super().compute(), **({"psnr_at_ceiling": self.at_ceiling} if self.at_ceiling else {})}


class SSIMMetric(_PerItemMean):
    """SSIM per image (Gaussian window 11, sigma 1.5, on [0, 1]), averaged over images."""

    name = "ssim"

    def score(self, batch: EvalBatch) -> Tensor:
        return ssim(batch.x_hat, batch.x)


class LPIPSMetric(_PerItemMean):
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
        self.usage.update(batch.valid_ids())

    def compute(self) -> dict[str, float]:
        figures = self.usage.compute()
        return {"codebook_usage": figures["usage"], "perplexity": figures["perplexity"]}


class ResidualMetric:
    """A residual quantizer's levels over the whole set (valid tokens, code space): ``residual_share``, per
    level the share of the squared residual reaching it that it removes, and ``residual_left``, the squared
    residual after the last level over that of the quantizer's input. Needs ``EvalBatch.latents``."""

    name = "residual"

    def __init__(self, quantizer: nn.Module) -> None:
        self.quantizer = quantizer
        self.shares = ResidualShares()

    def update(self, batch: EvalBatch) -> None:
        if batch.latents is None:
            raise ValueError("ResidualMetric needs the quantizer's input latents in the batch")
        device = batch.latents.device
        self.shares.update(self.quantizer.residual_energies(batch.latents, batch.ids.to(device)), batch.frames)

    def compute(self) -> dict[str, float | list[float]]:
        return self.shares.compute()


class WaveMetric(_PerItemMean):
    """A per-clip score ``fn(x_hat, x, lengths) -> (B,)`` of ``discotok.metrics.audio`` over each
    clip's valid samples, averaged over clips."""

    def __init__(self, name: str, fn: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> None:
        super().__init__()
        self.name, self.fn = name, fn

    def score(self, batch: EvalBatch) -> Tensor:
        return self.fn(batch.x_hat, batch.x, batch.lengths)


class SpeechMetric(_PerItemMean):
    """PESQ (wide band, at 16 kHz) or STOI per clip, averaged over the clips the library can score;
    ``<name>_unscored`` counts the others: PESQ refuses clips under 0.25 s or without detected
    speech, STOI (pystoi) returns 1e-5 with a warning for fewer than 30 frames of speech."""

    def __init__(self, name: str, sample_rate: int) -> None:
        super().__init__()
        if name not in ("pesq", "stoi"):
            raise ValueError(f"SpeechMetric is 'pesq' or 'stoi', got {name!r}")
        self.name, self.sample_rate, self.unscored = name, sample_rate, 0

    def _one(self, x_hat: Tensor, x: Tensor) -> Tensor | None:
        """The clip's score, or None when the library cannot score it."""
        if self.name == "pesq":
            from pesq import PesqError

            try:
                return audio_fns.pesq(x_hat, x, self.sample_rate)
            except PesqError:
                return None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = audio_fns.stoi(x_hat, x, self.sample_rate)
        return None if any("Not enough STFT frames" in str(w.message) for w in caught) else value

    def score(self, batch: EvalBatch) -> Tensor:
        values = []
        for b, n in enumerate(batch.lengths.tolist()):
            value = self._one(batch.x_hat[b : b + 1, :, :n], batch.x[b : b + 1, :, :n])
            self.unscored += value is None
            values += [] if value is None else [value]
        return torch.cat(values) if values else torch.zeros(0)

    def compute(self) -> dict[str, float]:
        return {self.name: self.total / self.count if self.count else float("nan"), f"{self.name}_unscored": self.unscored}


def image_metrics(lpips: nn.Module | None = None) -> list[Metric]:
    """PSNR and SSIM; LPIPS when its network ``lpips`` is given."""
    return [PSNRMetric(), SSIMMetric(), *([LPIPSMetric(lpips)] if lpips is not None else [])]


def audio_metrics(sample_rate: int, pesq_stoi: bool = False) -> list[Metric]:
    """SI-SNR (dB), multi-scale mel distance and multi-resolution STFT distance; PESQ and STOI
    with ``pesq_stoi`` (the ``audio-metrics`` extra; ``ImportError`` naming it when absent)."""
    metrics: list[Metric] = [
        WaveMetric("si_snr", audio_fns.si_snr),
        WaveMetric("mel_distance", lambda x_hat, x, n: audio_fns.mel_distance(x_hat, x, sample_rate, n)),
        WaveMetric("stft_distance", audio_fns.stft_distance),
    ]
    if pesq_stoi:
        audio_fns.require("pesq", "PESQ")
        audio_fns.require("pystoi", "STOI")
        metrics += [SpeechMetric("pesq", sample_rate), SpeechMetric("stoi", sample_rate)]
    return metrics
