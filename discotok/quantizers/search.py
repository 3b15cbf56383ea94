"""Nearest-code search and k-means for codebook quantizers.

The search never builds the full (M, K) score matrix: it scores row chunks with one
``addmm`` into a scratch buffer that is allocated once and reused. On CPU this matters
more than the arithmetic: glibc returns large freed blocks to the OS, so every fresh
multi-megabyte temporary is page-faulted in again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Scratch size in float32 elements: 4 MiB on CPU, 32 MiB on GPUs (bigger chunks keep kernels busy).
CPU_BUDGET = 1 << 20
GPU_BUDGET = 1 << 23


class CodeSearch:
    """Finds the best code for each row of ``x``, reusing one scratch buffer across calls.

    Not a module and not saved: copies (``deepcopy`` for an EMA of weights, pickling for
    worker processes) start with an empty scratch.
    """

    def __init__(self) -> None:
        self._scratch: Tensor | None = None

    def __deepcopy__(self, memo: dict) -> CodeSearch:
        return CodeSearch()

    def __getstate__(self) -> dict:
        return {"_scratch": None}

    def _buffer(self, rows: int, num_codes: int, device: torch.device) -> Tensor:
        budget = GPU_BUDGET if device.type == "cuda" else CPU_BUDGET
        rows = max(1, min(rows, budget // num_codes))
        s = self._scratch
        stale = (
            s is None
            or s.device != device
            or s.shape[1] != num_codes
            or s.shape[0] < rows
            or s.is_inference() != torch.is_inference_mode_enabled()
        )
        if stale:
            s = self._scratch = torch.empty(rows, num_codes, device=device, dtype=torch.float32)
        return s

    @torch.no_grad()
    def nearest(self, x: Tensor, codebook: Tensor, inner_product: bool = False) -> Tensor:
        """Ids (M,) int64 of the nearest code for each row of ``x`` (M, D).

        Euclidean: argmax of ``x·c − ½‖c‖²`` (= argmin ‖x − c‖). ``inner_product``: argmax of ``x·c``
        (the cosine when ``x`` and ``codebook`` are already l2-normalised). Computed in float32.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.detach().float().contiguous()
            codebook = codebook.detach().float()
            m, num_codes = x.shape[0], codebook.shape[0]
            ids = torch.empty(m, dtype=torch.long, device=x.device)
            if m == 0:
                return ids
            scratch = self._buffer(m, num_codes, x.device)
            bias = None if inner_product else codebook.pow(2).sum(1).mul_(-0.5)
            codes_t = codebook.t()
            rows = scratch.shape[0]
            for start in range(0, m, rows):
                stop = min(start + rows, m)
                scores = scratch[: stop - start]
                if bias is None:
                    torch.mm(x[start:stop], codes_t, out=scores)
                else:
                    torch.addmm(bias, x[start:stop], codes_t, out=scores)
                torch.argmax(scores, dim=1, out=ids[start:stop])
            return ids


def sample_rows(x: Tensor, n: int) -> Tensor:
    """``n`` random rows of ``x``: without replacement when there are enough, else with."""
    m = x.shape[0]
    if m >= n:
        idx = torch.randperm(m, device=x.device)[:n]
    else:
        idx = torch.randint(0, m, (n,), device=x.device)
    return x[idx]


@torch.no_grad()
def kmeans(
    x: Tensor, num_codes: int, iters: int, search: CodeSearch, cosine: bool = False
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on ``x`` (M, D) seeded from random rows.

    Returns ``(means (K, D), counts (K,))`` with counts from the last assignment. Clusters
    that receive no vector keep their previous centre. With ``cosine`` the means are
    renormalised (spherical k-means) and ``x`` must be l2-normalised.
    """
    x = x.detach().float()
    means = sample_rows(x, num_codes).clone()
    counts = torch.zeros(num_codes, device=x.device)
    for _ in range(iters):
        ids = search.nearest(x, means, cosine)
        counts = torch.bincount(ids, minlength=num_codes).float()
        sums = torch.zeros_like(means).index_add_(0, ids, x)
        new = sums / counts.clamp(min=1).unsqueeze(1)
        if cosine:
            new = F.normalize(new, dim=-1)
        means = torch.where(counts.unsqueeze(1) > 0, new, means)
    return means, counts
