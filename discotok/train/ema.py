"""EMA of the tokenizer's weights: what validation sees and what ``save_pretrained`` writes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from discotok.tokenizers import Tokenizer


class TokenizerEMA(nn.Module):
    """An exponential moving average of a tokenizer's parameters.

    The average is torch's ``AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` over the
    parameters only. Buffers — EMA codebooks, cluster sizes, k-means flags, dropout step
    counters — are copied from the live tokenizer instead: they are running statistics the
    quantizer already keeps consistent with each other, and counters must stay exact
    (averaging them, as Lightning's ``EMAWeightAveraging`` does with ``use_buffers``, would
    blur a restarted code and truncate a step counter). Until ``start_step`` the average
    equals the live weights.

    It is a submodule of the training module, so checkpoints carry it, a resumed run
    continues it, and devices and DDP processes get it like any other weight; its
    parameters never take gradients.
    """

    def __init__(self, tokenizer: Tokenizer, decay: float = 0.999, start_step: int = 0) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.average = AveragedModel(tokenizer, multi_avg_fn=EMAUpdate(decay), use_buffers=False)
        self.average.requires_grad_(False)

    @property
    def tokenizer(self) -> Tokenizer:
        """The averaged tokenizer."""
        return self.average.module

    @torch.no_grad()
    def update(self, tokenizer: Tokenizer, step: int) -> None:
        """Fold in ``tokenizer``'s weights after training step ``step`` (1-based count of steps done)."""
        if step <= self.start_step:
            copy_tensors(self.tokenizer.parameters(), tokenizer.parameters())
            self.average.n_averaged.fill_(1)  # the next update averages from this copy
        else:
            self.average.update_parameters(tokenizer)
        copy_tensors(self.tokenizer.buffers(), tokenizer.buffers())


class EMAUpdate:
    """torch's ``get_ema_multi_avg_fn(decay)`` as a picklable object (``ddp_spawn`` pickles the model)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        get_ema_multi_avg_fn(self.decay)(averaged, current, num_averaged)


def copy_tensors(targets: Iterable[torch.Tensor], sources: Iterable[torch.Tensor]) -> None:
    """Copy each source into its target in place (same order and shapes)."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)
