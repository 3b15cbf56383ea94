"""Latent perturbation (RobusTok) as a training option: ids in the codebook, alpha / beta / delta,
annealing, straight-through gradients, off by default, and a training step through TokenizerModule."""

from __future__ import annotations

import pytest
import torch

from discotok.quantizers import QUANTIZERS
from discotok.train.module import TokenizerModule
from discotok.train.perturbation import LatentPerturbation, changed_tokens
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config


def quantizer(name: str):
    spec = dict(TINY_QUANTIZERS[name])
    if name in ("vq", "rvq"):
        spec["kmeans_init"] = False
    return QUANTIZERS.build(spec).eval()


def random_ids(q, shape=(40, 16)) -> torch.Tensor:
    ids = torch.randint(0, q.codebook_size, shape, generator=torch.Generator().manual_seed(1))
    return ids if q.depth is None else torch.stack([ids] * q.depth, dim=-1) % q.codebook_size


@pytest.mark.parametrize("name", ["vq", "fsq", "lfq", "binary", "rvq"])
def test_perturbed_ids_stay_in_the_codebook_and_follow_alpha_and_beta(name):
    q = quantizer(name)
    ids = random_ids(q)
    p = LatentPerturbation(alpha=0.3, beta=0.25, delta=2, seed=5)
    counts = torch.zeros(ids.shape[0])
    changed_total, chosen_tokens = 0, 0
    for step in range(20):
        out = p.perturbed_ids(q, ids, 0.3, step)
        assert out.dtype == torch.long and out.shape == ids.shape
        assert out.min() >= 0 and out.max() < q.codebook_size
        q.check_ids(out)
        changed = changed_tokens(ids, out)
        samples = changed.any(dim=1)
        assert samples.sum() <= round(0.25 * ids.shape[0])  # only a beta fraction of the batch
        counts += samples.float()
        changed_total += int(changed.sum())
        chosen_tokens += round(0.25 * ids.shape[0]) * ids.shape[1]
    rate = changed_total / chosen_tokens
    expected = 0.3 if q.depth is None else 1 - 0.7**q.depth  # rvq: a token changes when any level does
    assert abs(rate - expected) < 0.05, rate
    assert (counts > 0).float().mean() > 0.9  # different samples on different steps
    assert torch.equal(p.perturbed_ids(q, ids, 0.3, 7), p.perturbed_ids(q, ids, 0.3, 7))  # seeded by the step


def test_a_replaced_vq_id_is_one_of_its_delta_nearest_codes():
    q = quantizer("vq")
    codes = q.lookup(torch.arange(q.codebook_size))
    dist = torch.cdist(codes, codes)
    dist.fill_diagonal_(float("inf"))
    nearest = dist.argsort(dim=1)[:, :3]
    ids = random_ids(q, (32, 16))
    for step in range(5):
        out = LatentPerturbation(alpha=1.0, beta=1.0, delta=3).perturbed_ids(q, ids, 1.0, step)
        assert (out != ids).all()  # alpha 1 on the whole batch: every token replaced
        assert (nearest[ids] == out[..., None]).any(-1).all()


def test_fsq_and_binary_neighbours_are_one_step_away_with_delta_one():
    fsq, binary = quantizer("fsq"), quantizer("binary")
    p = LatentPerturbation(alpha=1.0, beta=1.0, delta=1)
    ids = random_ids(fsq)
    digits = lambda t: torch.stack([(t // b) % 5 for b in (1, 5, 25)], dim=-1)  # noqa: E731
    assert ((digits(p.perturbed_ids(fsq, ids, 1.0, 0)) - digits(ids)).abs().sum(-1) == 1).all()
    ids = random_ids(binary)
    flips = p.perturbed_ids(binary, ids, 1.0, 0) ^ ids
    assert torch.equal(flips & (flips - 1), torch.zeros_like(flips)) and (flips > 0).all()  # exactly one bit


def test_alpha_is_annealed_linearly_between_the_two_steps():
    p = LatentPerturbation(alpha=0.5, alpha_end=0.1, anneal_start=100, anneal_end=200)
    assert [p.alpha_at(s) for s in (0, 100, 150, 200, 1000)] == pytest.approx([0.5, 0.5, 0.3, 0.1, 0.1])
    assert LatentPerturbation(alpha=0.2).alpha_at(10**6) == 0.2  # constant without alpha_end
    rising = LatentPerturbation(alpha=0.0, alpha_end=0.4, anneal_start=0, anneal_end=10)
    assert rising.enabled and rising.for_step(0) is None and rising.for_step(5) is not None
    with pytest.raises(ValueError, match="anneal_start < anneal_end"):
        LatentPerturbation(alpha=0.5, alpha_end=0.1, anneal_start=5, anneal_end=5)
    with pytest.raises(ValueError, match="perturbation.beta"):
        LatentPerturbation(alpha=0.5, beta=1.5)
    with pytest.raises(ValueError, match="perturbation.delta"):
        LatentPerturbation(alpha=0.5, delta=0)


def test_the_decoder_sees_the_perturbed_codes_and_gradients_pass_straight_through():
    q = quantizer("vq")
    h = torch.randn(8, 16, q.dim, requires_grad=True)
    p = LatentPerturbation(alpha=0.5, beta=0.5, delta=4)
    clean = q(h)
    out = p.apply(q, clean, 0.5, step=3)
    perturbed = p.perturbed_ids(q, clean.ids, 0.5, 3)
    changed = changed_tokens(clean.ids, perturbed)
    assert changed.any() and torch.equal(out.ids, clean.ids)
    assert torch.allclose(out.z_q[changed], q.ids_to_codes(perturbed)[changed])
    assert torch.equal(out.z_q[~changed], clean.z_q[~changed])
    assert out.stats["perturbed_tokens"] == pytest.approx(changed.float().mean().item())
    weights = torch.randn_like(clean.z_q)
    grad_clean = torch.autograd.grad((clean.z_q * weights).sum(), h, retain_graph=True)[0]
    grad_out = torch.autograd.grad((out.z_q * weights).sum(), h)[0]
    assert torch.equal(grad_clean, grad_out) and grad_out.abs().sum() > 0


def test_off_by_default_and_on_in_a_training_step(photo_batch):
    assert not LatentPerturbation().enabled
    assert not TokenizerModule(tiny_tokenizer_config("fsq")).perturbation.enabled
    torch.manual_seed(0)
    module = TokenizerModule(tiny_tokenizer_config("fsq"), perturbation={"alpha": 1.0, "beta": 0.5, "delta": 2})
    hook = module.perturbation.for_step(0)
    out = module.tokenizer(photo_batch, perturb=hook)
    assert out.quantized.stats["perturbed_tokens"] == pytest.approx(0.5)  # alpha 1 on half the batch
    out.x_hat.abs().mean().backward()
    assert all(p.grad is not None for p in module.tokenizer.encoder.parameters())
    with pytest.raises(ValueError, match="has no ids"):
        TokenizerModule(tiny_tokenizer_config("fsq") | {"quantizer": {"name": "identity", "dim": 8}},
                        perturbation={"alpha": 0.5})
