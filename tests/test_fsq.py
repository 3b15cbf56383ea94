"""FSQ against its contract and against vector-quantize-pytorch's FSQ (the oracle)."""

from __future__ import annotations

import math

import pytest
import torch
from vector_quantize_pytorch import FSQ as LibraryFSQ

from discotok.quantizers import QUANTIZERS
from discotok.quantizers.fsq import FSQ

LEVELS = [[8, 5, 5, 5], [8, 6, 5], [7, 5, 5, 5, 5], [3, 4]]


def grid(level: int) -> torch.Tensor:
    half = level // 2
    return torch.arange(-half, (level - 1) // 2 + 1) / half


@pytest.mark.parametrize("levels", LEVELS)
def test_ids_and_values_match_library(levels):
    torch.manual_seed(0)
    ours = FSQ(len(levels), levels=levels).eval()
    lib = LibraryFSQ(levels=levels).eval()
    h = torch.randn(2, 300, len(levels)) * 3
    out = ours(h)
    z_lib, ids_lib = lib(h)
    assert out.ids.dtype == torch.int64
    assert torch.equal(out.ids, ids_lib.long())
    torch.testing.assert_close(out.z_q, z_lib, rtol=0, atol=1e-6)
    assert torch.equal(ours.lookup(torch.arange(ours.codebook_size)), lib.implicit_codebook)


@pytest.mark.parametrize("levels", LEVELS)
def test_values_lie_exactly_on_the_grid(levels):
    q = FSQ(len(levels), levels=levels)
    out = q(torch.randn(3, 200, len(levels)) * 4)
    for channel, level in enumerate(levels):
        values = out.z_q[..., channel].reshape(-1, 1)
        assert (values == grid(level)).any(dim=1).all()
    assert 0 <= int(out.ids.min()) and int(out.ids.max()) < math.prod(levels)


def test_ids_to_codes_equals_z_q_with_projection():
    torch.manual_seed(0)
    q = FSQ(16, levels=[8, 5, 5, 5]).eval()
    out = q(torch.randn(2, 50, 16))
    assert out.z_q.shape == (2, 50, 16)
    assert torch.equal(q.ids_to_codes(out.ids), out.z_q)
    all_ids = torch.arange(q.codebook_size)
    assert torch.unique(q.lookup(all_ids), dim=0).shape[0] == q.codebook_size


def test_loss_is_zero_and_gradients_reach_input():
    q = FSQ(12)
    z = torch.randn(2, 10, 12, requires_grad=True)
    out = q(z)
    assert out.loss.shape == () and float(out.loss) == 0.0
    (out.z_q.square().sum() + out.loss).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_stats_on_hand_built_input():
    q = FSQ(4)
    h = torch.cat([torch.full((1, 3, 4), -10.0), torch.full((1, 3, 4), 10.0)], dim=1)
    out = q(h)
    assert out.ids.tolist() == [[0, 0, 0, 999, 999, 999]]
    assert float(out.stats["usage"]) == pytest.approx(2 / 1000)
    assert float(out.stats["perplexity"]) == pytest.approx(2.0)


def test_low_precision_input_quantized_in_float32():
    q = FSQ(4)
    h = torch.randn(2, 64, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(h)
    assert out.z_q.dtype == torch.bfloat16
    assert torch.equal(out.ids, q(h.float()).ids)


def test_build_by_name_and_validation():
    q = QUANTIZERS.build({"name": "fsq", "dim": 8, "levels": [8, 6, 5]})
    assert q.codebook_size == 240 and q.code_dim == 3
    assert q.bits_per_token == pytest.approx(math.log2(240))
    with pytest.raises(ValueError, match="binary"):
        FSQ(4, levels=[2, 5])


def test_check_ids_errors():
    q = FSQ(4)
    with pytest.raises(ValueError, match="must lie in"):
        q.ids_to_codes(torch.tensor([[0, 1000]]))
    with pytest.raises(ValueError, match="must lie in"):
        q.ids_to_codes(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="shape"):
        q.ids_to_codes(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        q.ids_to_codes(torch.tensor([[0.0, 1.0]]))


def test_trains_after_a_forward_under_inference_mode() -> None:
    """Constants first built under inference_mode (a sanity-check validation, extraction) still serve training."""
    fsq = FSQ(dim=3, levels=[5, 5, 5])
    with torch.inference_mode():
        fsq.eval()(torch.randn(1, 4, 3))
    z = torch.randn(1, 4, 3, requires_grad=True)
    fsq.train()(z).z_q.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
