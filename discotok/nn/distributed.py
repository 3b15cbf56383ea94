"""Small collective helpers so codebook statistics agree across DDP ranks.

Every helper checks at call time whether a process group is running (Lightning starts
it after the modules are built), and is a no-op in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group with more than one rank is running now."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum_(*tensors: Tensor) -> None:
    """Sum ``tensors`` in place over all ranks, in one collective call."""
    if not is_distributed() or not tensors:
        return
    if len(tensors) == 1 and tensors[0].is_contiguous():
        dist.all_reduce(tensors[0])
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def all_reduce_mean_(*tensors: Tensor) -> None:
    """Average ``tensors`` in place over all ranks, in one collective call."""
    if not is_distributed():
        return
    all_reduce_sum_(*tensors)
    for t in tensors:
        t.div_(dist.get_world_size())


def broadcast_(*tensors: Tensor, src: int = 0) -> None:
    """Overwrite ``tensors`` in place on every rank with rank ``src``'s values."""
    if not is_distributed():
        return
    for t in tensors:
        if t.is_contiguous():
            dist.broadcast(t, src)
        else:
            buf = t.contiguous()
            dist.broadcast(buf, src)
            t.copy_(buf)
