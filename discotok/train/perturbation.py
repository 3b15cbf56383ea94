"""Latent perturbation (RobusTok, https://arxiv.org/abs/2509.12474) as a training option.

On a ``beta`` fraction of each batch (``round(beta * B)`` samples, drawn at random), every
token is replaced with probability ``alpha`` by one of its ``delta`` nearest codes
(``discotok.quantizers.perturb``: codebook neighbours for VQ, grid steps for FSQ, bit flips
for LFQ / binary, per level for RVQ). The decoder sees the perturbed codes; the gradient
reaches the encoder as if they were the encoder's own (straight-through: the value is
swapped, the graph is the unperturbed one), so the decoder learns to decode the near-miss
tokens a generator will produce. ``alpha`` is annealed linearly from ``alpha`` at
``anneal_start`` to ``alpha_end`` at ``anneal_end`` (steps; constant outside).

Draws come from a generator seeded by ``(seed, step)`` and the DDP rank: a resumed run
perturbs exactly as the uninterrupted one would, and each rank perturbs its own data.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from discotok.nn.distributed import rank
from discotok.nn.seeding import step_generator
from discotok.quantizers.base import Quantizer, QuantizerOutput
from discotok.quantizers.perturb import perturb_ids


class LatentPerturbation:
    """Perturb quantized tokens in training; ``for_step(step)`` gives the ``perturb`` hook of ``Tokenizer.forward``.

    Args:
        alpha: probability that a token of a perturbed sample is replaced (at ``anneal_start``).
        beta: fraction of the batch's samples that are perturbed.
        delta: a replaced token takes one of its ``delta`` nearest codes.
        alpha_end: ``alpha`` at ``anneal_end`` and after (None: no annealing).
        anneal_start, anneal_end: the steps between which ``alpha`` moves linearly to ``alpha_end``.
        seed: seeds the draws (with the step and the rank).
    """

    def __init__(
        self,
        alpha: float = 0.0,
        beta: float = 0.1,
        delta: int = 10,
        alpha_end: float | None = None,
        anneal_start: int = 0,
        anneal_end: int = 0,
        seed: int = 0,
    ) -> None:
        alpha_end = alpha if alpha_end is None else alpha_end
        for name, value in (("alpha", alpha), ("alpha_end", alpha_end), ("beta", beta)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"perturbation.{name} must lie in [0, 1], got {value}")
        if int(delta) < 1:
            raise ValueError(f"perturbation.delta must be at least 1, got {delta}")
        if alpha_end != alpha and not 0 <= int(anneal_start) < int(anneal_end):
            raise ValueError(
                f"annealing alpha needs 0 <= perturbation.anneal_start < anneal_end, got {anneal_start} and {anneal_end}"
            )
        self.alpha, self.alpha_end, self.beta, self.delta = float(alpha), float(alpha_end), float(beta), int(delta)
        self.anneal_start, self.anneal_end, self.seed = int(anneal_start), int(anneal_end), int(seed)

    @property
    def enabled(self) -> bool:
        """Whether any step perturbs anything."""
        return self.beta > 0 and max(self.alpha, self.alpha_end) > 0

    def alpha_at(self, step: int) -> float:
        """The token replacement probability at training step ``step`` (linear annealing)."""
        if step <= self.anneal_start or self.alpha_end == self.alpha:
            return self.alpha
        if step >= self.anneal_end:
            return self.alpha_end
        progress = (step - self.anneal_start) / (self.anneal_end - self.anneal_start)
        return self.alpha + progress * (self.alpha_end - self.alpha)

    def for_step(self, step: int):
        """The hook ``(quantizer, quantized) -> quantized`` for training step ``step``, or None when idle."""
        alpha = self.alpha_at(step)
        if alpha <= 0 or self.beta <= 0:
            return None
        return lambda quantizer, quantized: self.apply(quantizer, quantized, alpha, step)

    def perturbed_ids(self, quantizer: Quantizer, ids: Tensor, alpha: float, step: int) -> Tensor:
        """The ids after perturbation at ``step``: ``round(beta * B)`` random samples of ``ids``
        have each token replaced with probability ``alpha`` by one of its ``delta`` nearest codes."""
        generator = step_generator(self.seed + 7919 * rank(), step)
        chosen = torch.randperm(ids.shape[0], generator=generator)[: round(self.beta * ids.shape[0])].to(ids.device)
        perturbed = ids.clone()
        perturbed[chosen] = perturb_ids(quantizer, ids[chosen], alpha, self.delta, generator).to(ids.device)
        return perturbed

    def apply(self, quantizer: Quantizer, quantized: QuantizerOutput, alpha: float, step: int) -> QuantizerOutput:
        """Perturb ``quantized``: its ``z_q`` takes the codes of the perturbed ids (straight-through).

        ``ids`` stay the encoder's; ``stats["perturbed_tokens"]`` is the fraction of tokens replaced.
        """
        ids = quantized.ids
        perturbed = self.perturbed_ids(quantizer, ids, alpha, step)
        changed = changed_tokens(ids, perturbed)
        codes = quantizer.ids_to_codes(perturbed).to(quantized.z_q.dtype)
        z_q = torch.where(changed[..., None], quantized.z_q + (codes - quantized.z_q).detach(), quantized.z_q)
        stats = {**quantized.stats, "perturbed_tokens": changed.float().mean().detach()}
        return replace(quantized, z_q=z_q, stats=stats)


def changed_tokens(before: Tensor, after: Tensor) -> Tensor:
    """Boolean (B, N): tokens whose id (any level, for residual ids) differs."""
    changed = before != after
    return changed.any(dim=-1) if changed.ndim == 3 else changed
