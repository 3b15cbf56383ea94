"""Residual vector quantizer (SoundStream / EnCodec / DAC): each level codes the last residual."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from discotok.nn.seeding import step_generator
from discotok.quantizers.multirate import RateLayout
from discotok.quantizers.base import Quantizer, QuantizerOutput, straight_through
from discotok.quantizers.precision import full_precision
from discotok.quantizers.vq import VectorQuantizer
from discotok.registry import QUANTIZERS


@QUANTIZERS.register("rvq")
class ResidualVQ(Quantizer):
    """``depth`` vector quantizers in sequence; ids shaped (B, N, k) for k active levels.

    Any prefix of the levels is a valid lower bit-rate code: ``ids[..., :k]`` of a
    full-depth encoding decodes with ``ids_to_codes``. In training steps, with probability
    ``quantizer_dropout`` a step uses a random depth in ``[min_depth, depth]`` (EnCodec /
    DAC), drawn from a generator seeded by ``(seed, steps)`` where ``steps`` is a saved
    buffer: every DDP rank draws the same depth without communication, and a resumed run
    continues the same sequence. ``loss`` is the mean of the active levels' losses; the
    straight-through gradient reaches the input once (not once per level).

    ``stats`` carries, besides level 1's usage and perplexity and their means over levels,
    per active level ``j`` (from 1): ``level{j}/usage``, ``level{j}/perplexity``,
    ``level{j}/loss``, ``level{j}/code_norm`` (mean norm of the chosen codes) and
    ``level{j}/residual_share`` (the share of the squared residual reaching level j that it
    removes), and ``residual_left`` (squared error after the last level over that of the input).

    The remaining keyword arguments (``cosine``, ``ema``, ``decay``, ``commitment_weight``,
    ``codebook_weight``, ``kmeans_init``, ``kmeans_iters``, ``dead_code_threshold``) are
    passed to each level's ``VectorQuantizer``; k-means runs per level on that level's
    residual. ``cosine`` normalises each residual, which is rarely what residual coding wants.

    ``level_dim`` gives every level its own projections to a small code space of that size
    (DAC's factorised codes: each level searches its own low-dimensional, with ``cosine`` and
    ``raw_codes`` l2-normalised, codebook and the residual is taken back in the full space).

    ``strides`` (one per level, each dividing the largest S; SNAC's ``vq_strides``) makes the levels
    multi-rate: a token vector holds S frames of ``code_dim / S`` features (the ``audio`` encoder's
    ``frames_per_token``), level j codes the residual averaged over ``strides[j]`` frames, and ids are
    (B, N, columns) with S / stride codes per level and token (``discotok.quantizers.multirate``:
    [4, 2, 1] gives 1 + 2 + 4 = 7 columns; depth k keeps the first ``columns(k)``). None: every
    stride 1, plain residual VQ with one column per level.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 4,
        codebook_size: int = 1024,
        code_dim: int | None = None,
        quantizer_dropout: float = 0.5,
        min_depth: int = 1,
        seed: int = 0,
        cosine: bool = False,
        ema: bool = True,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        level_dim: int | None = None,
        raw_codes: bool = False,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__(dim, code_dim or dim)
        if depth < 1 or not 1 <= min_depth <= depth:
            raise ValueError(f"need 1 <= min_depth <= depth, got min_depth={min_depth}, depth={depth}")
        if strides is not None and len(strides) != depth:
            raise ValueError(f"strides needs one stride per level ({depth}), got {list(strides)}")
        self.rates = RateLayout(strides or [1] * depth)
        if self.code_dim % self.rates.frames:
            raise ValueError(f"code_dim {self.code_dim} does not split into {self.rates.frames} frames per token")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must lie in [0, 1], got {quantizer_dropout}")
        self.depth = depth
        self.min_depth = min_depth
        self.quantizer_dropout = quantizer_dropout
        self.seed = seed
        self.levels = nn.ModuleList(
            VectorQuantizer(
                dim=self.code_dim // self.rates.frames,
                codebook_size=codebook_size,
                code_dim=level_dim,
                raw_codes=raw_codes,
                cosine=cosine,
                ema=ema,
                decay=decay,
                commitment_weight=commitment_weight,
                codebook_weight=codebook_weight,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_threshold=dead_code_threshold,
            )
            for _ in range(depth)
        )
        for level in self.levels[1:]:
            level.search = self.levels[0].search  # levels run one after another: one scratch buffer
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.levels[0].codebook_size

    def columns(self, depth: int | None = None) -> int:
        """Id columns at ``depth`` levels (None: all): the depth itself unless the levels are multi-rate."""
        return self.rates.columns(self.check_depth(depth))

    def depth_of(self, columns: int) -> int:
        return self.rates.depth_of(columns)

    def depth_for_step(self, step: int) -> int:
        """The training depth drawn at training step ``step`` (pure: same seed, same answer)."""
        g = step_generator(self.seed, step)
        dropped = torch.rand((), generator=g).item() < self.quantizer_dropout
        if not dropped:
            return self.depth
        return int(torch.randint(self.min_depth, self.depth + 1, (), generator=g))

    def _active_depth(self, depth: int | None) -> int:
        if self.in_training_step:
            step = int(self.steps)
            self.steps.add_(1)
            if depth is None:
                depth = self.depth_for_step(step)
        depth = self.depth if depth is None else depth
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must lie in [1, {self.depth}], got {depth}")
        return depth

    def forward(self, z: Tensor, depth: int | None = None) -> QuantizerOutput:
        """Quantize ``z`` (B, N, dim) with ``depth`` levels (None: all, or the drawn depth in training)."""
        return super().forward(z, depth=depth)

    @full_precision
    def quantize(self, h: Tensor, depth: int | None = None) -> QuantizerOutput:
        """Residual-quantize ``h`` (B, N, code_dim) in code space."""
        k = self._active_depth(depth)
        residual, q_sum = h, torch.zeros_like(h)
        ids, losses, stats, energies = [], [], [], [h.detach().float().square().sum()]
        for j, level in enumerate(self.levels[:k]):
            out = level.quantize(level.project_in(self.rates.pool(residual, j)))
            q = self.rates.unpool(level.project_out(out.z_q), j).detach()
            residual = residual - q
            q_sum = q_sum + q
            ids.append(out.ids)
            losses.append(out.loss)
            stats.append(out.stats)
            energies.append(residual.detach().float().square().sum())
        loss = torch.stack(losses).mean()
        if self.in_training_step:
            # Idle learned codebooks join the graph with zero weight, so DDP needs no find_unused_parameters.
            idle = [p.sum() for level in self.levels[k:] for p in level.parameters()]
            if idle:
                loss = loss + 0.0 * torch.stack(idle).sum()
        return QuantizerOutput(
            z_q=straight_through(h, q_sum),
            ids=self.rates.join(ids),
            loss=loss,
            stats=self._stats(stats, torch.stack(losses).detach(), torch.stack(energies), ids),
        )

    def _stats(
        self, stats: list[dict[str, Tensor]], losses: Tensor, energies: Tensor, ids: list[Tensor]
    ) -> dict[str, Tensor]:
        """Level 1's usage and perplexity, their means over levels, and per level ``j``: usage, perplexity,
        loss, the mean norm of the codes it chose and ``level{j}/residual_share`` (see ``shares_removed``)."""
        usage = torch.stack([s["usage"] for s in stats])
        perplexity = torch.stack([s["perplexity"] for s in stats])
        shares = shares_removed(energies)
        out = {
            "usage": usage[0],
            "perplexity": perplexity[0],
            "usage_mean": usage.mean(),
            "perplexity_mean": perplexity.mean(),
            "depth_used": torch.tensor(float(len(stats))),
            "residual_left": (energies[-1] / energies[0].clamp(min=1e-12)).detach(),
        }
        for j in range(len(stats)):
            code_norm = self.levels[j].lookup(ids[j]).detach().float().norm(dim=-1).mean()
            out |= {
                f"level{j + 1}/usage": usage[j],
                f"level{j + 1}/perplexity": perplexity[j],
                f"level{j + 1}/loss": losses[j],
                f"level{j + 1}/code_norm": code_norm,
                f"level{j + 1}/residual_share": shares[j],
            }
        return out

    @torch.no_grad()
    def residual_energies(self, z: Tensor, ids: Tensor) -> Tensor:
        """Squared norm of the code-space residual of each token before level 1 and after each level of
        ``ids``: the quantizer's input ``z`` (B, N, dim) and its ids of k levels give (B, N, k + 1)."""
        self.check_ids(ids)
        residual = self.project_in(z).detach().float()
        energies = [residual.square().sum(-1)]
        for j, level_ids in enumerate(self.rates.split(ids.long())):
            residual = residual - self.level_codes(j, level_ids).float()
            energies.append(residual.square().sum(-1))
        return torch.stack(energies, dim=-1)

    def nearest_codes(self, ids: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """Ids (..., columns): each column's ids replaced independently, with its level's codebook."""
        levels = self.rates.column_levels
        columns = [self.levels[levels[c]].nearest_codes(ids[..., c], delta, generator) for c in range(ids.shape[-1])]
        return torch.stack(columns, dim=-1)

    def perturb_chosen(self, ids: Tensor, chosen: Tensor, delta: int, generator: torch.Generator) -> Tensor:
        """Every chosen code of every token drawn independently from its level's nearest codes."""
        levels = self.rates.column_levels
        for c in range(ids.shape[-1]):
            mask = chosen[..., c]
            ids[..., c][mask] = self.levels[levels[c]].nearest_codes(ids[..., c][mask], delta, generator)
        return ids

    def level_codes(self, j: int, ids: Tensor) -> Tensor:
        """Level ``j``'s codes for its ids (B, N * S / stride), as token vectors (B, N, code_dim) in the residual's
        space (through the level's projection, if any; repeated over its stride)."""
        level = self.levels[j]
        return self.rates.unpool(level.project_out(level.lookup(ids)), j)

    def lookup(self, ids: Tensor) -> Tensor:
        """Sum of the codes of the levels ``ids`` (B, N, columns) hold."""
        return sum(self.level_codes(j, level_ids) for j, level_ids in enumerate(self.rates.split(ids)))


def shares_removed(energies: Tensor) -> Tensor:
    """From residual energies before level 1 and after each of k levels (k + 1,), the share of its
    incoming residual that each level removes (k,): ``1 - e[j + 1] / e[j]`` (0 where nothing came in)."""
    before, after = energies[:-1], energies[1:]
    return torch.where(before > 0, 1 - after / before.clamp(min=1e-12), torch.zeros_like(before))
