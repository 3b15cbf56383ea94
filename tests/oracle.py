"""Compare a discotok quantizer with its vector-quantize-pytorch counterpart."""

from __future__ import annotations

import torch


def assert_same_as_library(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor, atol: float) -> None:
    """Same input -> identical ids and (within ``atol``) the same quantized vectors, in eval."""
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        q_theirs, ids_theirs, _ = theirs(x)
        out = ours(x)
    assert torch.equal(out.ids, ids_theirs)
    torch.testing.assert_close(out.z_q, q_theirs, rtol=0, atol=atol)
