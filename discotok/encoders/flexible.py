"""``flexible``: the TiTok encoder trained with nested dropout, so any prefix of its tokens decodes.

FlexTok / One-D-Piece: in training, each sample keeps a random prefix of k tokens and the
decoder sees its learned mask token at positions k..N-1. With ``causal=True`` latent
token i attends to the patches and to latents 0..i only (patches attend to patches), so
the first k tokens do not depend on the rest: ``forward(x, num_tokens=k)`` runs only k
latents and gives exactly the first k of the full encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from discotok.nn.seeding import step_generator
from discotok.registry import ENCODERS
from discotok.encoders.base import EncoderOutput
from discotok.encoders.titok import TiTokEncoder

K_DISTRIBUTIONS = ("uniform", "pow2")


def prefix_causal_mask(num_patches: int, num_latents: int, device: torch.device | None = None) -> Tensor:
    """Boolean mask (True: may attend) over ``[patches, latents]``.

    Patches attend to all patches; latent i attends to all patches and to latents 0..i.
    """
    total = num_patches + num_latents
    mask = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    mask[:, :num_patches] = True
    return mask


def check_k_distribution(k_distribution: str) -> str:
    """``k_distribution`` if it is one of ``K_DISTRIBUTIONS``, else ``ValueError``."""
    if k_distribution not in K_DISTRIBUTIONS:
        raise ValueError(f"k_distribution must be one of {K_DISTRIBUTIONS}, got {k_distribution!r}")
    return k_distribution


def prefix_lengths(num_tokens: int, k_distribution: str) -> Tensor:
    """The prefix lengths nested dropout draws from: 1..N (``uniform``) or the powers of two <= N (``pow2``)."""
    if k_distribution == "pow2":
        return 2 ** torch.arange(num_tokens.bit_length())
    return torch.arange(1, num_tokens + 1)


def draw_keep(num_tokens: int, k_distribution: str, seed: int, step: int, batch_size: int) -> Tensor:
    """Nested dropout's prefix lengths (batch_size,) for training step ``step``, from a generator seeded by
    ``(seed, step)``: the same on every DDP rank and after a resume."""
    lengths = prefix_lengths(num_tokens, k_distribution)
    g = step_generator(seed, step)
    return lengths[torch.randint(len(lengths), (batch_size,), generator=g)]


@ENCODERS.register("flexible")
class FlexibleEncoder(TiTokEncoder):
    """TiTok encoder + nested dropout: in training ``EncoderOutput.keep`` holds each sample's prefix length.

    ``k_distribution`` is ``"uniform"`` (k uniform over 1..N) or ``"pow2"`` (uniform over
    the powers of two <= N). The lengths of a training step come from a generator seeded
    by ``(seed, steps)``, ``steps`` a saved buffer counting training forwards: every DDP
    rank draws the same lengths and a resumed run continues the same sequence.
    """

    draws_prefix = True

    def __init__(
        self,
        latent_dim: int,
        num_tokens: int = 256,
        image_size: Sequence[int] = (256, 256),
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
        k_distribution: str = "uniform",
        causal: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            latent_dim, num_tokens=num_tokens, image_size=image_size, patch_size=patch_size, width=width,
            depth=depth, heads=heads, mlp_ratio=mlp_ratio, in_channels=in_channels,
        )
        self.k_distribution = check_k_distribution(k_distribution)
        self.causal = bool(causal)
        self.seed = seed
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def prefix_lengths(self) -> Tensor:
        """The prefix lengths nested dropout can draw (the support of ``k_distribution``)."""
        return prefix_lengths(self.num_tokens, self.k_distribution)

    def draw_keep(self, batch_size: int, step: int) -> Tensor:
        """Prefix lengths (batch_size,) for training step ``step`` (pure: same seed, same answer)."""
        return draw_keep(self.num_tokens, self.k_distribution, self.seed, step, batch_size)

    def attention_mask(self, num_patches: int, num_latents: int, device: torch.device) -> Tensor | None:
        return prefix_causal_mask(num_patches, num_latents, device) if self.causal else None

    def forward(self, x: Tensor, lengths: Tensor | None = None, num_tokens: int | None = None) -> EncoderOutput:
        """As ``TiTokEncoder.forward``; in training (without ``num_tokens``) also draws ``keep``."""
        out = super().forward(x, num_tokens=num_tokens)
        if self.training and num_tokens is None:
            out.keep = self.draw_keep(x.shape[0], int(self.steps)).to(x.device)
            self.steps.add_(1)
        return out
