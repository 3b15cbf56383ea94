"""ResidualVQ: prefix decoding, oracle ids, depth sequence, reconstruction vs depth."""

from __future__ import annotations

import pytest
import torch

from discotok.quantizers import QUANTIZERS
from discotok.quantizers.rvq import ResidualVQ
from tests.oracle import assert_same_as_library

torch.set_num_threads(2)


def trained_rvq(x: torch.Tensor, steps: int = 3, **kwargs) -> ResidualVQ:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=x.shape[-1], quantizer_dropout=0.0, **kwargs).train()
    for _ in range(steps):
        rvq(x)
    return rvq.eval()


def test_ids_to_codes_and_prefixes() -> None:
    x = torch.randn(2, 64, 8)
    rvq = trained_rvq(x, depth=3, codebook_size=32, code_dim=4)
    out = rvq(x)
    assert out.ids.shape == (2, 64, 3) and out.ids.dtype == torch.int64
    torch.testing.assert_close(rvq.ids_to_codes(out.ids), out.z_q, rtol=0, atol=1e-6)
    for k in (1, 2):
        low = rvq(x, depth=k)
        assert torch.equal(low.ids, out.ids[..., :k])
        assert low.stats["depth_used"].item() == k
        torch.testing.assert_close(rvq.ids_to_codes(out.ids[..., :k]), low.z_q, rtol=0, atol=1e-6)
    assert rvq.bits_per_token == 15.0


def test_oracle_same_ids_as_library_residual_vq() -> None:
    from vector_quantize_pytorch import ResidualVQ as LibResidualVQ

    torch.manual_seed(0)
    ours = ResidualVQ(dim=6, depth=3, codebook_size=64, kmeans_init=False).eval()
    theirs = LibResidualVQ(
        dim=6, num_quantizers=3, codebook_size=64, kmeans_init=False, sync_codebook=False
    ).eval()
    with torch.no_grad():
        for mine, lib in zip(ours.levels, theirs.layers, strict=True):
            lib._codebook.embed.copy_(mine.codebook.unsqueeze(0))
    assert_same_as_library(ours, theirs, torch.randn(2, 100, 6), atol=1e-5)


def test_reconstruction_error_does_not_increase_with_depth() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 256, 8)
    rvq = trained_rvq(x, steps=4, depth=4, codebook_size=64)
    errors = [(rvq(x, depth=k).z_q - x).square().mean().item() for k in range(1, 5)]
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0]


def _training_depths(rvq: ResidualVQ, steps: int) -> list[int]:
    x = torch.randn(1, 8, rvq.dim)
    rvq.train()
    return [int(rvq(x).stats["depth_used"]) for _ in range(steps)]


def test_training_depth_sequence_is_seeded_and_resumable() -> None:
    kw = dict(dim=4, depth=4, codebook_size=8, quantizer_dropout=0.5, seed=7)
    a, b = ResidualVQ(**kw), ResidualVQ(**kw)
    seq_a = _training_depths(a, 30)
    assert seq_a == _training_depths(b, 30), "same seed, same depths (what DDP ranks rely on)"
    assert len(set(seq_a)) > 1 and 4 in seq_a
    assert seq_a != _training_depths(ResidualVQ(**{**kw, "seed": 8}), 30)
    assert seq_a == [a.depth_for_step(i) for i in range(30)]

    resumed = ResidualVQ(**kw)
    resumed.load_state_dict(a.state_dict())
    assert _training_depths(resumed, 10) == _training_depths(a, 10)
    assert int(resumed.steps) == 40

    always = ResidualVQ(**{**kw, "quantizer_dropout": 0.0})
    assert set(_training_depths(always, 10)) == {4}
    floor = ResidualVQ(**{**kw, "quantizer_dropout": 1.0, "min_depth": 3})
    assert set(_training_depths(floor, 20)) <= {3, 4}


@pytest.mark.parametrize("ema", [True, False])
def test_gradients_and_loss(ema: bool) -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, depth=3, codebook_size=16, code_dim=4, ema=ema, quantizer_dropout=0.0)
    z = torch.randn(2, 12, 8, requires_grad=True)
    out = rvq.train()(z, depth=2)
    assert out.ids.shape == (2, 12, 2)
    (out.z_q.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    if not ema:
        assert rvq.levels[0].codebook.grad.abs().sum() > 0
        assert rvq.levels[2].codebook.grad is not None  # idle level joins the graph for DDP
    for key in ("usage", "perplexity", "usage_mean", "perplexity_mean", "depth_used"):
        assert key in out.stats


def test_build_by_name_and_check_ids_messages() -> None:
    rvq = QUANTIZERS.build({"name": "rvq", "dim": 4, "depth": 4, "codebook_size": 16})
    assert rvq.depth == 4 and rvq.codebook_size == 16
    with pytest.raises(ValueError, match=r"1 <= depth <= 4"):
        rvq.ids_to_codes(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, N, depth\)"):
        rvq.ids_to_codes(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        rvq.ids_to_codes(torch.full((1, 3, 2), 16))
    with pytest.raises(ValueError, match=r"depth must lie in \[1, 4\]"):
        rvq.eval()(torch.randn(1, 3, 4), depth=5)


def test_per_level_stats_match_a_direct_computation() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 200, 8)
    rvq = trained_rvq(x, steps=3, depth=3, codebook_size=16, code_dim=4)
    out = rvq(x)
    h = rvq.project_in(x)
    energies = rvq.residual_energies(x, out.ids).sum(dim=(0, 1))
    assert energies[0] == pytest.approx(h.square().sum().item(), rel=1e-5)
    residual = h
    for j in range(3):
        codes = rvq.levels[j].lookup(out.ids[..., j])
        after = residual - codes
        share = 1 - after.square().sum() / residual.square().sum()
        assert out.stats[f"level{j + 1}/residual_share"].item() == pytest.approx(share.item(), abs=1e-5)
        assert energies[j + 1] == pytest.approx(after.square().sum().item(), rel=1e-5)
        assert out.stats[f"level{j + 1}/code_norm"].item() == pytest.approx(codes.norm(dim=-1).mean().item(), rel=1e-5)
        assert 0 < out.stats[f"level{j + 1}/usage"] <= 1
        residual = after
    left = residual.square().sum() / h.square().sum()
    assert out.stats["residual_left"].item() == pytest.approx(left.item(), rel=1e-4)
    assert "level3/usage" not in rvq(x, depth=2).stats


def test_first_batch_smaller_than_the_codebook_leaves_every_level_a_residual() -> None:
    """k-means on a first batch of fewer vectors than codes must not memorise it: a level that codes
    every vector exactly leaves the next level an all-zero residual, whose k-means puts every code at 0."""
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, depth=3, codebook_size=64, quantizer_dropout=0.0, dead_code_threshold=0.1).train()
    first = rvq(torch.randn(1, 48, 8))
    assert first.stats["level1/residual_share"] < 0.9, "level 1 memorised the batch"
    for _ in range(3):
        rvq(torch.randn(1, 48, 8))
    held_out = rvq.eval()(torch.randn(1, 2000, 8))
    shares = [held_out.stats[f"level{j}/residual_share"].item() for j in (1, 2, 3)]
    assert min(shares) > 0.1, shares
