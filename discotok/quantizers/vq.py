"""Vector quantizer: nearest code in a learned codebook (VQ-VAE / VQGAN / TiTok / LlamaGen)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.nn.distributed import all_reduce_sum_, broadcast_, rank
from discotok.quantizers.base import Quantizer, QuantizerOutput, codebook_stats, straight_through
from discotok.quantizers.precision import full_precision
from discotok.quantizers.search import CodeSearch, kmeans, sample_rows
from discotok.registry import QUANTIZERS


@QUANTIZERS.register("vq")
class VectorQuantizer(Quantizer):
    """One codebook of ``codebook_size`` vectors of size ``code_dim``; ids shaped (B, N).

    Args:
        dim: input/output feature size.
        codebook_size: number of codes K.
        code_dim: size of the codes; None means ``dim``, smaller adds Linear projections.
        cosine: l2-normalise inputs and codes and pick the code of highest cosine.
        raw_codes: with ``cosine`` (and ``ema=False``), search on normalised vectors but output the raw
            (unnormalised) code and compute the losses against the raw input: DAC's factorised codes.
        ema: update codes as EMA cluster means (buffers); False learns them as a
            parameter with the codebook loss ``codebook_weight * ||sg(h) - q||²``.
        decay, eps: EMA decay and Laplace smoothing of the cluster counts.
        commitment_weight: weight of ``||h - sg(q)||²``.
        kmeans_init, kmeans_iters: initialise codes by k-means on the first training batch (at most
            half as many clusters as the batch has vectors; the other codes start unused).
        dead_code_threshold: in training steps, codes whose EMA usage count (expected uses per
            step) falls below this are re-seeded from vectors of the current batch; 0 disables.
        dot_product: pick the code of highest inner product ``h·c`` with the raw (unnormalised) input and
            codes, not the nearest one (IBQ's index propagation quantizer); not with ``cosine``.
        projections: Linear projections in and out even when ``code_dim == dim`` (a publisher's 1x1
            convolutions around the quantizer, as IBQ's).

    All losses are means over elements. In training steps (``in_training_step``) under DDP
    the EMA statistics are summed over ranks and k-means / restarts use rank 0's data, so
    every rank keeps the same codebook; other forwards neither change it nor communicate.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 1024,
        code_dim: int | None = None,
        cosine: bool = False,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        raw_codes: bool = False,
        dot_product: bool = False,
        projections: bool = False,
    ) -> None:
        super().__init__(dim, code_dim or dim, projections=projections)
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        if dot_product and cosine:
            raise ValueError("vq: dot_product searches the raw vectors; it excludes cosine")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.num_codes = codebook_size
        self.cosine = cosine
        self.raw_codes = bool(raw_codes)
        self.dot_product = bool(dot_product)
        self.ema = ema
        self.decay = decay
        self.eps = eps
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.search = CodeSearch()

        init = torch.randn(codebook_size, self.code_dim)
        if cosine:
            init = F.normalize(init, dim=-1)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    @property
    def codebook_size(self) -> int:
        return self.num_codes

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.num_codes}, code_dim={self.code_dim}, cosine={self.cosine}, "
            f"ema={self.ema}, dead_code_threshold={self.dead_code_threshold}"
        )

    def codes(self) -> Tensor:
        """The (K, code_dim) codebook as used for search, detached, normalised if cosine."""
        codes = self.codebook.detach()
        return F.normalize(codes, dim=-1) if self.cosine and not self.ema else codes

    def lookup(self, ids: Tensor) -> Tensor:
        """Code-space vectors for ``ids`` of any shape (normalised if cosine, unless ``raw_codes``)."""
        q = F.embedding(ids, self.codebook)
        return F.normalize(q, dim=-1) if self.cosine and not self.ema and not self.raw_codes else q

    @full_precision
    def quantize(self, h: Tensor, **kwargs) -> QuantizerOutput:
        """Quantize ``h`` (B, N, code_dim) to its nearest codes."""
        if kwargs:
            raise TypeError(f"vq.quantize got unexpected argument(s) {sorted(kwargs)}")
        b = h.shape[0]
        searched = F.normalize(h, dim=-1) if self.cosine else h
        if not self.raw_codes:
            h = searched
        flat = rearrange(searched.detach(), "b n d -> (b n) d").float()
        if self.in_training_step and not bool(self.initted):
            self._kmeans_init(flat)
        ids = self.search.nearest(flat, self.codes(), self.cosine or self.dot_product)
        q = rearrange(self.lookup(ids), "(b n) d -> b n d", b=b)

        hf = h.float()
        loss = self.commitment_weight * F.mse_loss(hf, q.detach())
        if not self.ema:
            loss = loss + self.codebook_weight * F.mse_loss(q, hf.detach())
        if self.in_training_step:
            self._update(flat, ids)
        ids = rearrange(ids, "(b n) -> b n", b=b)
        z_q = straight_through(h, q.detach().to(h.dtype))
        return QuantizerOutput(z_q, ids, loss, codebook_stats(ids, self.num_codes))

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        """Set the codes to k-means centres of rank 0's batch, the same on every rank."""
        if rank() == 0:
            means, counts = self._kmeans(flat)
        else:
            means = flat.new_zeros(self.num_codes, self.code_dim)
            counts = flat.new_zeros(self.num_codes)
        broadcast_(means, counts)
        # Empty clusters (duplicates when the batch has fewer vectors than codes, or every code but one
        # when a residual level sees an all-zero residual) start at the dead-code threshold, so the next
        # step re-seeds them from real vectors; without restarts they count as used once, so the EMA
        # keeps them where k-means left them.
        counts = counts.clamp(min=self.dead_code_threshold if self.dead_code_threshold > 0 else 1.0)
        self.codebook.copy_(means)
        self.cluster_size.copy_(counts)
        if self.ema:
            self.embed_sum.copy_(means * counts.unsqueeze(1))
        self.initted.fill_(True)

    def _kmeans(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Codes and counts from k-means with at most half as many clusters as vectors, so that no
        cluster is a single memorised vector (whose residual would be exactly zero and leave the next
        residual level nothing to learn from). The codes beyond those are fitted centres plus a
        little noise (a tenth of the vectors' spread), with count 0."""
        fitted = max(1, min(self.num_codes, flat.shape[0] // 2))
        means, counts = kmeans(flat, fitted, self.kmeans_iters, self.search, self.cosine)
        rest = self.num_codes - fitted
        if rest:
            spread = flat.std(dim=0, keepdim=True) if flat.shape[0] > 1 else torch.zeros_like(flat[:1])
            extra = sample_rows(means, rest) + 0.1 * spread * torch.randn(rest, flat.shape[1], device=flat.device)
            means = torch.cat([means, F.normalize(extra, dim=-1) if self.cosine else extra])
            counts = torch.cat([counts, counts.new_zeros(rest)])
        return means, counts

    @torch.no_grad()
    def _update(self, flat: Tensor, ids: Tensor) -> None:
        """EMA statistics (summed over ranks), EMA codebook update and dead-code restarts."""
        counts = torch.bincount(ids, minlength=self.num_codes).float()
        w = 1.0 - self.decay
        if self.ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, ids, flat)
            all_reduce_sum_(counts, sums)
            self.cluster_size.lerp_(counts, w)
            self.embed_sum.lerp_(sums, w)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
            codes = self.embed_sum / smoothed.unsqueeze(1)
            self.codebook.copy_(F.normalize(codes, dim=-1) if self.cosine else codes)
        else:
            all_reduce_sum_(counts)
            self.cluster_size.lerp_(counts, w)
        if self.dead_code_threshold > 0:
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor) -> None:
        """Re-seed codes used less than ``dead_code_threshold`` from rank 0's batch."""
        dead = (self.cluster_size < self.dead_code_threshold).nonzero().squeeze(1)
        if dead.numel() == 0 or flat.shape[0] == 0:
            return
        samples = sample_rows(flat, dead.numel()).to(self.codebook.dtype)
        broadcast_(samples)
        self.codebook[dead] = samples
        self.cluster_size[dead] = self.dead_code_threshold
        if self.ema:
            self.embed_sum[dead] = samples * self.dead_code_threshold
