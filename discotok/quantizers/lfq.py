"""Lookup-free quantization (MAGVIT-v2, https://arxiv.org/abs/2310.05737; Open-MAGVIT2).

The binary quantizer plus MAGVIT-v2's entropy loss, computed without ever building the
``2 ** bits`` codes. As in vector-quantize-pytorch's ``LFQ``, token ``h`` gives code ``c``
(entries ±s) the probability ``softmax_c(2 h·c / temperature)``. That softmax factorises
exactly into independent bits, ``P(bit i = 1) = sigmoid(4 s h_i / temperature)``, so

* the per-sample entropy is the sum of the per-bit binary entropies (exact, O(bits));
* the batch (codebook) entropy ``H(mean_tokens p)`` does not factorise: the bits are split
  into ``groups`` groups and the entropies of the groups' batch-mean distributions are
  summed (an upper bound on the joint's; equal to the library's for ``groups=1``). Each
  group's ``2 ** k`` mean probabilities (``k = bits / groups``) are an outer product of its
  two half-groups summed over tokens, so per token only about ``k * 2 ** (k / 2)`` values
  are ever held.

Differences from the library: it clamps ``log p`` at 1e-5, we do not (the two agree
while every code has probability above 1e-5); ``groups=G`` matches its ``num_codebooks=G``
except that we sum the groups' entropies where it averages them; it returns a zero
entropy loss in eval mode, we compute it in both modes (so validation losses compare). In
training steps under DDP the batch distribution is averaged over ranks; any other forward
uses this rank's batch alone and talks to no other rank (see ``Quantizer``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor

from discotok.nn.distributed import is_distributed
from discotok.quantizers.binary import BinaryQuantizer
from discotok.quantizers.bits import ids_to_bits
from discotok.registry import QUANTIZERS

MAX_GROUP_BITS = 16


def bit_entropy(logits: Tensor) -> Tensor:
    """Binary entropy (nats) of ``sigmoid(logits)``, elementwise and stable for large logits."""
    return F.softplus(logits) - torch.sigmoid(logits) * logits


def code_probs(p_one: Tensor) -> Tensor:
    """Per-token probabilities (T, 2**k) of all codes of k independent bits, big-endian ids.

    ``p_one`` (T, k) holds each bit's probability of being one.
    """
    table = ids_to_bits(torch.arange(2 ** p_one.shape[-1], device=p_one.device), p_one.shape[-1])
    p = torch.where(table, p_one.unsqueeze(-2), 1 - p_one.unsqueeze(-2))  # (T, 2**k, k)
    return p.prod(dim=-1)


def mean_code_probs(p_one: Tensor) -> Tensor:
    """Token-mean code probabilities (2**k,) of (T, k) independent bits, big-endian ids.

    Splits the bits into a high and a low half and sums the outer products over tokens,
    so per token only about k * 2**ceil(k/2) values are built, never 2**k.
    """
    high = (p_one.shape[-1] + 1) // 2
    mean = einsum(code_probs(p_one[:, :high]), code_probs(p_one[:, high:]), "t a, t b -> a b")
    return mean.flatten() / p_one.shape[0]


def mean_across_ranks(t: Tensor) -> Tensor:
    """Average ``t`` over the distributed process group (with gradient), if one runs now."""
    if not is_distributed():
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t) / dist.get_world_size()


def entropy(p: Tensor) -> Tensor:
    """Entropy (nats) of the distribution(s) ``p`` along the last dim; finite gradient at p = 0."""
    return -(p * p.clamp_min(torch.finfo(p.dtype).tiny).log()).sum(dim=-1)


@QUANTIZERS.register("lfq")
class LFQ(BinaryQuantizer):
    """Lookup-free quantizer: binary codes plus a grouped, factorised entropy loss.

    Args:
        dim: input/output dim; linear projections to/from ``bits`` when different.
        bits: code channels, so ``2 ** bits`` ids per token.
        groups: groups of ``bits // groups`` bits for the batch entropy; needs
            ``bits % groups == 0`` and ``bits // groups <= 16``.
        entropy_weight: weight of ``per_sample_entropy - diversity_gamma * batch_entropy``.
        diversity_gamma: weight of the batch entropy inside the entropy loss.
        temperature: softmax temperature (the library's ``1 / inv_temperature``).
        commitment_weight: weight of ``mean((h - sg(q)) ** 2)``.
        sphere: l2-normalise first and use codes ±1/sqrt(bits) (BSQ-style entropy too).
        bit_order: ``"big"`` (first channel most significant, vector-quantize-pytorch) or ``"little"``
            (first channel least significant, Open-MAGVIT2); the entropies do not depend on it.
    """

    def __init__(
        self,
        dim: int,
        bits: int = 14,
        groups: int = 1,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        temperature: float = 0.01,
        commitment_weight: float = 0.25,
        sphere: bool = False,
        bit_order: str = "big",
    ) -> None:
        super().__init__(dim, bits=bits, sphere=sphere, commitment_weight=commitment_weight, bit_order=bit_order)
        if groups < 1 or bits % groups:
            raise ValueError(f"lfq groups must divide bits={bits}, got groups={groups}")
        if bits // groups > MAX_GROUP_BITS:
            fewest = -(-bits // MAX_GROUP_BITS)
            suggest = next(g for g in range(fewest, bits + 1) if bits % g == 0)
            raise ValueError(
                f"lfq with bits={bits}, groups={groups} needs 2^{bits // groups} batch-entropy "
                f"probabilities per group (limit 2^{MAX_GROUP_BITS}); use groups={suggest} or more"
            )
        if temperature <= 0:
            raise ValueError(f"lfq temperature must be positive, got {temperature}")
        self.groups = groups
        self.entropy_weight = entropy_weight
        self.diversity_gamma = diversity_gamma
        self.temperature = temperature

    def entropies(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Mean per-sample entropy and summed per-group batch entropy (nats) of ``h`` (..., bits)."""
        logits = rearrange(h, "... k -> (...) k") * (4 * self.code_scale / self.temperature)
        per_sample = bit_entropy(logits).sum(dim=-1).mean()
        p_one = rearrange(torch.sigmoid(logits), "t (g k) -> g t k", g=self.groups)
        probs = [mean_code_probs(p) for p in p_one]
        if self.in_training_step:  # the only collective: other forwards use this rank's batch alone
            probs = [mean_across_ranks(p) for p in probs]
        batch = sum(entropy(p) for p in probs)
        return per_sample, batch

    def aux_loss(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``entropy_weight * (per_sample_entropy - diversity_gamma * batch_entropy)``."""
        per_sample, batch = self.entropies(h)
        loss = self.entropy_weight * (per_sample - self.diversity_gamma * batch)
        return loss, {"per_sample_entropy": per_sample.detach(), "batch_entropy": batch.detach()}
