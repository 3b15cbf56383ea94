"""``split_rvq`` (Mimi's quantizer): a semantic and an acoustic residual group side by side; ids semantic first,
any prefix a lower bit rate, quantizer dropout on the acoustic group only."""

from __future__ import annotations

import pytest
import torch

from discotok.quantizers import QUANTIZERS


def quantizer(**kwargs) -> torch.nn.Module:
    spec = {"name": "split_rvq", "dim": 12, "code_dim": 6, "depth": 4, "semantic_depth": 1, "codebook_size": 16,
            "kmeans_init": False, **kwargs}
    return QUANTIZERS.build(spec)


def test_groups_code_the_same_input_and_prefixes_decode():
    q = quantizer().eval()
    z = torch.randn(2, 10, 12)
    with torch.no_grad():
        out = q(z)
        assert out.ids.shape == (2, 10, 4) and q.bits_per_token == 16
        assert torch.allclose(q.ids_to_codes(out.ids), out.z_q, atol=1e-6)
        semantic = q.semantic(z)
        acoustic = q.acoustic(z)  # the acoustic group codes z itself, not the semantic residual
        assert torch.equal(out.ids, torch.cat([semantic.ids, acoustic.ids], dim=-1))
        assert torch.allclose(out.z_q, semantic.z_q + acoustic.z_q, atol=1e-6)
        for depth in (1, 2, 3):
            shallow = q(z, depth=depth)
            assert torch.equal(shallow.ids, out.ids[..., :depth])
            assert torch.allclose(q.ids_to_codes(shallow.ids), shallow.z_q, atol=1e-6)
        energies = q.residual_energies(z, out.ids)
        assert energies.shape == (2, 10, 5)
        assert torch.allclose(energies[..., 1], (z - semantic.z_q).square().sum(-1), rtol=1e-5)


def test_training_draws_the_acoustic_depth_and_trains_both_groups():
    q = quantizer(quantizer_dropout=1.0, ema=False).train()
    z = torch.randn(2, 10, 12, requires_grad=True)
    depths = {q(z).ids.shape[-1] for _ in range(12)}
    assert len(depths) > 1 and all(2 <= d <= 4 for d in depths)  # the semantic level always, acoustic 1..3
    out = q(z, depth=4)
    out.loss.backward()
    assert z.grad is not None and q.semantic.levels[0].codebook.grad is not None


def test_bad_depths_and_ids_are_refused():
    q = quantizer()
    with pytest.raises(ValueError, match="semantic_depth"):
        quantizer(semantic_depth=4)
    with pytest.raises(ValueError, match="depth must lie in 1..4"):
        q(torch.randn(1, 3, 12), depth=5)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 15\]"):
        q.ids_to_codes(torch.full((1, 3, 2), 16))
