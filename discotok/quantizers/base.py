"""The quantizer contract shared by every quantizer (DESIGN.md §2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from discotok.quantizers.neighbours import codebook_neighbours
from discotok.quantizers.precision import in_full_precision


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    z_q:   (B, N, D) quantized vectors in the input space, straight-through gradient.
    ids:   (B, N) or (B, N, depth) int64 (a multi-rate ``rvq``: (B, N, columns), see ``Quantizer.columns``).
    loss:  scalar, the quantizer's own terms (commitment, codebook, entropy), already weighted.
    stats: detached scalars for logging, at least ``usage`` (fraction of the codebook used
           in this batch) and ``perplexity``.
    """

    z_q: Tensor
    ids: Tensor
    loss: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


class NonFiniteError(ValueError):
    """Some items of a batch hold NaN or infinite values.

    ``items`` are their indices in the batch; ``where`` what held them; ``problem`` says so (for a
    batch job's list of skipped inputs).
    """

    def __init__(self, items: list[int], where: str) -> None:
        self.items = items
        self.where = where
        self.problem = f"NaN or infinite values in {where}"
        super().__init__(f"batch item(s) {items}: {self.problem}")


def check_finite(x: Tensor, where: str) -> None:
    """Raise ``NonFiniteError`` naming the batch items (first dim) of ``x`` that are not all finite."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = (~finite).reshape(x.shape[0] if x.ndim else 1, -1).any(dim=1).nonzero().flatten().tolist()
    raise NonFiniteError(bad, where)


def straight_through(h: Tensor, q: Tensor) -> Tensor:
    """Return a tensor equal to ``q`` exactly whose gradient flows to ``h`` unchanged."""
    return q + (h - h.detach())


def codebook_stats(ids: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """Fraction of the codebook used by ``ids`` and the perplexity of their histogram.

    Uses ``unique`` rather than a histogram over every code, so it costs nothing extra
    for very large (2^18 and up) vocabularies.
    """
    _, counts = torch.unique(ids.detach().reshape(-1), sorted=False, return_counts=True)
    p = counts / max(ids.numel(), 1)
    return {
        "usage": torch.full((), counts.numel() / codebook_size),
        "perplexity": torch.special.entr(p).sum().exp(),
    }


class Quantizer(nn.Module):
    """Base class: projections between the input dim and the code dim, id checks, bit counts.

    Subclasses implement ``quantize(h)`` on ``h`` of shape (B, N, code_dim) returning a
    ``QuantizerOutput`` in code space, ``lookup(ids)`` giving code-space vectors, and the
    ``codebook_size`` property. ``depth`` is None for ids shaped (B, N) and an int for
    ids shaped (B, N, depth).

    Training steps only: a quantizer changes its state (EMA codebooks, k-means init,
    dead-code restarts, dropout step counters) and makes DDP collectives (all-reduce,
    broadcast) only in a training step, ``in_training_step``: the module is in training
    mode *and* gradients are on. Every other forward — eval mode, ``torch.no_grad`` or
    ``inference_mode`` (validation, extraction, evaluation, ``Tokenizer.encode``) — reads the
    state and talks to no other rank, so ranks may run different numbers of such batches.
    """

    depth: int | None = None
    continuous: ClassVar[bool] = False
    registered_name: ClassVar[str] = "unregistered"

    def __init__(self, dim: int, code_dim: int, projections: bool = False) -> None:
        """``projections``: Linear maps between ``dim`` and ``code_dim`` even when they are equal (a publisher's
        1x1 convolutions around the quantizer); they are there whenever the two differ."""
        super().__init__()
        if dim <= 0 or code_dim <= 0:
            raise ValueError(f"dim and code_dim must be positive, got {dim} and {code_dim}")
        self.dim = dim
        self.code_dim = code_dim
        project = projections or dim != code_dim
        self.project_in: nn.Module = nn.Linear(dim, code_dim) if project else nn.Identity()
        self.project_out: nn.Module = nn.Linear(code_dim, dim) if project else nn.Identity()

    @property
    def codebook_size(self) -> int:
        """Number of distinct ids per token (per level for residual quantizers)."""
        raise NotImplementedError

    @property
    def bits_per_token(self) -> float:
        """Bits carried by one token: log2(codebook_size) times its id columns (the depth, for most)."""
        return math.log2(self.codebook_size) * self.columns()

    def columns(self, depth: int | None = None) -> int:
        """Ids per token position at ``depth`` levels (None: all): the depth, 1 for a single level; a multi-rate
        ``rvq`` holds several codes of its finer levels per token."""
        return self.check_depth(depth)

    def depth_of(self, columns: int) -> int:
        """The depth of ids (B, N, columns) (the inverse of ``columns``)."""
        return columns

    def _allowed_columns(self) -> list[int]:
        return [self.columns(d) for d in range(1, (self.depth or 1) + 1)]

    def check_depth(self, depth: int | None) -> int:
        """The levels ids at ``depth`` use: ``depth`` checked against 1..depth (None: all; 1 for a single level)."""
        if depth is None:
            return self.depth or 1
        if not self.depth:
            raise ValueError(
                f"depth selects a bit rate of a residual quantizer; quantizer "
                f"{type(self).registered_name!r} has a single level (pass depth=None)"
            )
        if not 1 <= int(depth) <= self.depth:
            raise ValueError(f"depth must lie in 1..{self.depth}, got {depth}")
        return int(depth)

    @property
    def in_training_step(self) -> bool:
        """Whether this forward may update state and make collectives: training mode with gradients on."""
        return self.training and torch.is_grad_enabled()

    def quantize(self, h: Tensor, **kwargs) -> QuantizerOutput:
        raise NotImplementedError

    def lookup(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor, **kwargs) -> QuantizerOutput:
        """Quantize ``z`` of shape (B, N, dim); ``NonFiniteError`` (a ``ValueError``) names the
        batch items holding NaN or inf, which would otherwise become garbage ids. The input
        projection and the quantizer's math run in float32 whatever autocast does around them;
        ``z_q`` comes back in ``z``'s dtype (before ``project_out``)."""
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects z of shape (B, N, {self.dim}), got {tuple(z.shape)}"
            )
        check_finite(z, "the encoder's latents (the quantizer's input; an overflow?)")
        out = self.quantize(in_full_precision(self.project_in, z), **kwargs)
        return replace(out, z_q=self.project_out(out.z_q.to(z.dtype)))

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """Map ids of shape (B, N) or (B, N, depth) back to z_q of shape (B, N, dim)."""
        self.check_ids(ids)
        return self.project_out(self.lookup(ids.long()))

    def nearest_codes(self, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """For every id (any shape), one of its ``delta`` nearest other codes in this quantizer's code space;
        by default an exact search over the codebook (Euclidean; cosine codes are unit vectors, so the same order)."""
        return codebook_neighbours(self, ids.reshape(-1), delta, generator).reshape(ids.shape)

    def perturb_chosen(self, ids: Tensor, chosen: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """``ids`` with every position where ``chosen`` (same shape) is True replaced by one of its ``delta``
        nearest codes (in place)."""
        ids[chosen] = self.nearest_codes(ids[chosen], delta, generator)
        return ids

    def check_ids(self, ids: Tensor) -> None:
        """Raise ``ValueError`` naming the expected shape or range when ``ids`` do not fit."""
        if not isinstance(ids, Tensor):
            raise TypeError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise ValueError(f"ids must have an integer dtype, got {ids.dtype}")
        if self.depth is None:
            if ids.ndim != 2:
                raise ValueError(f"ids must have shape (B, N), got {tuple(ids.shape)}")
        elif ids.ndim != 3 or ids.shape[-1] not in self._allowed_columns():
            allowed = self._allowed_columns()
            columns = "" if allowed == list(range(1, self.depth + 1)) else f" ({allowed} id columns at these depths)"
            raise ValueError(
                f"ids must have shape (B, N, depth) with 1 <= depth <= {self.depth}{columns}, "
                f"got {tuple(ids.shape)}"
            )
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.codebook_size:
                raise ValueError(
                    f"ids must lie in [0, {self.codebook_size - 1}] (codebook size "
                    f"{self.codebook_size}); got values in [{lo}, {hi}]"
                )
