"""``audio``: waveform reconstruction loss — weighted waveform L1, multi-scale mel, multi-resolution STFT."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from discotok.losses.spectral import MEL_BANDS, MEL_WINDOWS, STFT_SIZES, MultiResolutionSTFT, MultiScaleMel
from discotok.registry import LOSSES


@LOSSES.register("audio")
class AudioReconstructionLoss(nn.Module):
    """``l1_weight * |x̂ - x| + mel_weight * mel + stft_weight * stft`` on (B, C, T) waveforms.

    ``mel`` is ``MultiScaleMel`` (log10 mel L1 over ``mel_windows`` with ``mel_bands`` bands);
    ``stft`` is ``MultiResolutionSTFT`` (spectral convergence + log magnitude over
    ``stft_sizes``). A zero weight skips its term.
    """

    def __init__(
        self,
        sample_rate: int,
        l1_weight: float = 0.1,
        mel_weight: float = 1.0,
        stft_weight: float = 1.0,
        mel_windows: Sequence[int] = MEL_WINDOWS,
        mel_bands: Sequence[int] = MEL_BANDS,
        stft_sizes: Sequence[int] = STFT_SIZES,
    ) -> None:
        super().__init__()
        weights = {"l1": l1_weight, "mel": mel_weight, "stft": stft_weight}
        if any(w < 0 for w in weights.values()) or not any(weights.values()):
            raise ValueError(f"need non-negative weights, not all zero; got {weights}")
        self.weights = weights
        self.mel = MultiScaleMel(sample_rate, mel_windows, mel_bands) if mel_weight else None
        self.stft = MultiResolutionSTFT(stft_sizes) if stft_weight else None

    def forward(self, x_hat: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the weighted loss and its detached parts (``l1``, ``mel``, ``stft``)."""
        if x_hat.shape != x.shape:
            raise ValueError(f"reconstruction shape {tuple(x_hat.shape)} differs from the input's {tuple(x.shape)}")
        parts = {"l1": F.l1_loss(x_hat.float(), x.float())}
        if self.mel is not None:
            parts["mel"] = self.mel(x_hat, x)
        if self.stft is not None:
            parts["stft"] = self.stft(x_hat, x)
        loss = sum(self.weights[k] * v for k, v in parts.items())
        return loss, {k: v.detach() for k, v in parts.items()}
