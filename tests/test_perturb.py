"""Id perturbation to one of the δ nearest codes, per quantizer (RobusTok's pFID)."""

from __future__ import annotations

import pytest
import torch

from discotok.quantizers import QUANTIZERS
from discotok.quantizers.perturb import nearest_codes, perturb_ids


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(name: str, **kwargs):
    return QUANTIZERS.build({"name": name, **kwargs}).eval()


def test_alpha_zero_keeps_and_alpha_one_changes_every_id() -> None:
    vq = build("vq", dim=4, codebook_size=32, kmeans_init=False)
    ids = torch.randint(0, 32, (4, 10))
    assert torch.equal(perturb_ids(vq, ids, 0.0, 3, gen()), ids)
    changed = perturb_ids(vq, ids, 1.0, 3, gen())
    assert (changed != ids).all() and changed.min() >= 0 and changed.max() < 32
    assert torch.equal(perturb_ids(vq, ids, 1.0, 3, gen()), changed)  # seeded
    fraction = (perturb_ids(vq, torch.randint(0, 32, (64, 64)), 0.25, 3, gen()) != 0).float().mean()
    assert 0.0 < fraction
    many = torch.randint(0, 32, (100, 100))
    assert abs((perturb_ids(vq, many, 0.25, 3, gen()) != many).float().mean().item() - 0.25) < 0.02


def test_vq_picks_among_the_delta_nearest_codes_by_brute_force() -> None:
    vq = build("vq", dim=4, codebook_size=16, kmeans_init=False)
    codes = vq.codebook
    dist = torch.cdist(codes, codes)
    dist.fill_diagonal_(float("inf"))
    nearest3 = dist.argsort(dim=1)[:, :3]
    ids = torch.arange(16).repeat(200)
    out = nearest_codes(vq, ids, 3, gen())
    for i in range(16):
        picked = set(out[ids == i].tolist())
        assert picked == set(nearest3[i].tolist()), i  # only the 3 nearest, and all of them over 200 draws
    assert torch.equal(nearest_codes(vq, torch.arange(16), 1, gen()), nearest3[:, 0])


def test_fsq_neighbours_are_grid_steps() -> None:
    fsq = build("fsq", dim=3, levels=[5, 5, 5])
    ids = torch.arange(125).repeat(4)
    digits = lambda t: torch.stack([(t // b) % 5 for b in (1, 5, 25)], dim=-1)  # noqa: E731
    # Every code has at least 3 neighbours one step along one channel (a corner exactly 3): they are nearest.
    step = (digits(nearest_codes(fsq, ids, 3, gen())) - digits(ids)).abs()
    assert (step.sum(-1) == 1).all()
    # An interior code has six such neighbours, all tied: over many draws each appears.
    centre = torch.full((600,), 2 + 2 * 5 + 2 * 25)
    picked = nearest_codes(fsq, centre, 6, gen())
    assert sorted(set(picked.tolist())) == sorted(62 + d for d in (-25, -5, -1, 1, 5, 25))


def test_binary_and_lfq_flip_bits() -> None:
    for name in ("binary", "lfq"):
        q = build(name, dim=8, bits=8)
        ids = torch.randint(0, 256, (500,))
        one = nearest_codes(q, ids, 8, gen())
        assert ((ids ^ one).bitwise_and(0xFF).tolist() == (ids ^ one).tolist())
        assert all(bin(int(x)).count("1") == 1 for x in ids ^ one)
        two = nearest_codes(q, ids, 8 + 28, gen())
        flips = [bin(int(x)).count("1") for x in ids ^ two]
        assert set(flips) == {1, 2}
        assert set(bin(int(x)).count("1") for x in ids ^ nearest_codes(q, ids, 1, gen())) == {1}


def test_rvq_levels_use_their_own_codebooks() -> None:
    rvq = build("rvq", dim=4, depth=3, codebook_size=8, kmeans_init=False)
    ids = torch.randint(0, 8, (2, 5, 3))
    out = perturb_ids(rvq, ids, 1.0, 1, gen())
    assert out.shape == ids.shape and (out != ids).all()
    for level in range(3):
        dist = torch.cdist(rvq.levels[level].codebook, rvq.levels[level].codebook)
        dist.fill_diagonal_(float("inf"))
        assert torch.equal(out[..., level], dist.argmin(1)[ids[..., level]])


def test_bad_arguments() -> None:
    vq = build("vq", dim=4, codebook_size=8, kmeans_init=False)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        perturb_ids(vq, torch.zeros(1, 2, dtype=torch.long), 1.5, 1)
    with pytest.raises(ValueError, match=r"delta must lie in 1..7"):
        perturb_ids(vq, torch.zeros(1, 2, dtype=torch.long), 1.0, 8)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 7\]"):
        perturb_ids(vq, torch.full((1, 2), 9), 0.5, 1)
