"""Bit packing, the binary quantizer and LFQ, with vector-quantize-pytorch's LFQ as the oracle."""

from __future__ import annotations

import math
import random
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from vector_quantize_pytorch import LFQ as LibraryLFQ

from discotok.quantizers import QUANTIZERS, bits_to_ids, ids_to_bits
from discotok.quantizers.binary import BinaryQuantizer
from discotok.quantizers.bits import ids_to_signs
from discotok.quantizers.lfq import LFQ, code_probs, mean_code_probs


def library_lfq(bits: int, sphere: bool = False, num_codebooks: int = 1) -> LibraryLFQ:
    return LibraryLFQ(
        dim=bits,
        codebook_size=2 ** (bits // num_codebooks),
        num_codebooks=num_codebooks,
        entropy_loss_weight=0.1,
        commitment_loss_weight=0.25,
        spherical=sphere,
    )


# bits.py


def test_bits_are_big_endian_and_accept_01_pm1_bool():
    assert bits_to_ids(torch.tensor([1, 0, 0])).item() == 4
    assert bits_to_ids(torch.tensor([-1.0, 1.0, 1.0])).item() == 3
    assert bits_to_ids(torch.tensor([True, False, True])).item() == 5
    assert ids_to_bits(torch.tensor(6), 4).tolist() == [False, True, True, False]
    assert ids_to_signs(torch.tensor([1]), 2).tolist() == [[-1.0, 1.0]]


@pytest.mark.parametrize("num_bits", [1, 10, 41, 62, 63])
def test_bits_round_trip(num_bits):
    rng = random.Random(num_bits)
    ids = torch.tensor([[rng.getrandbits(num_bits) for _ in range(7)] for _ in range(5)])
    ids[0, 0], ids[0, 1] = 0, 2**num_bits - 1
    bits = ids_to_bits(ids, num_bits)
    assert bits.shape == (5, 7, num_bits) and bits.dtype == torch.bool
    assert torch.equal(bits_to_ids(bits), ids)
    assert torch.equal(bits_to_ids(bits.float() * 2 - 1), ids)


def test_bits_validation():
    with pytest.raises(ValueError, match="num_bits"):
        ids_to_bits(torch.tensor([1]), 64)
    with pytest.raises(ValueError, match="integer"):
        ids_to_bits(torch.tensor([1.0]), 4)


# binary quantizer


def test_binary_sign_zero_is_positive_and_commitment():
    q = BinaryQuantizer(4, bits=4)
    out = q(torch.zeros(1, 2, 4))
    assert out.ids.tolist() == [[15, 15]] and (out.z_q == 1).all()
    h = torch.tensor([[[0.5, -2.0, 1.0, -1.0]]])
    out = q(h)
    assert out.ids.tolist() == [[0b1010]]
    assert float(out.loss) == pytest.approx(0.25 * (0.25 + 1.0) / 4)


def test_binary_stats_on_hand_built_input():
    q = BinaryQuantizer(2, bits=2)
    h = torch.tensor([[[1.0, 1.0], [2.0, 3.0], [-1.0, 1.0], [-1.0, -1.0]]])
    out = q(h)
    assert out.ids.tolist() == [[3, 3, 1, 0]]
    assert float(out.stats["usage"]) == pytest.approx(3 / 4)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert float(out.stats["perplexity"]) == pytest.approx(float((-(p * p.log()).sum()).exp()))


@pytest.mark.parametrize("name", ["binary", "lfq"])
def test_little_endian_bit_order_reverses_the_channels(name):
    big = QUANTIZERS.build({"name": name, "dim": 4, "bits": 4})
    little = QUANTIZERS.build({"name": name, "dim": 4, "bits": 4, "bit_order": "little"})
    h = torch.tensor([[[0.5, -2.0, -1.0, -1.0], [-0.5, 2.0, 1.0, 3.0]]])
    assert little(h).ids.tolist() == [[0b0001, 0b1110]]  # Open-MAGVIT2: sum of 2^i over positive channels i
    assert little(h).ids.tolist() == big(h.flip(-1)).ids.tolist()
    assert torch.equal(little.ids_to_codes(little(h).ids), little(h).z_q)
    assert torch.equal(little(h).loss, big(h).loss)  # the entropies do not depend on the order
    with pytest.raises(ValueError, match="bit_order"):
        QUANTIZERS.build({"name": name, "dim": 4, "bits": 4, "bit_order": "middle"})


@pytest.mark.parametrize("name", ["binary", "lfq"])
@pytest.mark.parametrize("sphere", [False, True])
@pytest.mark.parametrize("dim", [10, 24])
def test_ids_to_codes_equals_z_q(name, sphere, dim):
    torch.manual_seed(0)
    q = QUANTIZERS.build({"name": name, "dim": dim, "bits": 10, "sphere": sphere}).eval()
    out = q(torch.randn(2, 40, dim))
    assert out.ids.shape == (2, 40) and out.ids.dtype == torch.int64
    assert torch.equal(q.ids_to_codes(out.ids), out.z_q)
    assert q.codebook_size == 2**10 and q.bits_per_token == 10


@pytest.mark.parametrize("name", ["binary", "lfq"])
def test_sphere_codes_have_unit_norm(name):
    q = QUANTIZERS.build({"name": name, "dim": 12, "bits": 12, "sphere": True})
    out = q(torch.randn(3, 20, 12) * 5)
    torch.testing.assert_close(out.z_q.norm(dim=-1), torch.ones(3, 20))
    torch.testing.assert_close(q.lookup(torch.arange(50)).norm(dim=-1), torch.ones(50))


def test_wide_codes_round_trip():
    q = BinaryQuantizer(48, bits=48).eval()
    out = q(torch.randn(2, 30, 48))
    assert int(out.ids.max()) > 2**40
    assert torch.equal(q.ids_to_codes(out.ids), out.z_q)


@pytest.mark.parametrize("name", ["binary", "lfq"])
def test_gradients_reach_input(name):
    q = QUANTIZERS.build({"name": name, "dim": 16, "bits": 8})
    z = torch.randn(2, 10, 16, requires_grad=True)
    out = q(z)
    (out.z_q.square().sum() + out.loss).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_entropy_term_alone_reaches_input():
    q = LFQ(8, bits=8, commitment_weight=0.0, temperature=1.0)
    z = torch.randn(2, 10, 8, requires_grad=True)
    q(z).loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["binary", "lfq"])
def test_check_ids_errors(name):
    q = QUANTIZERS.build({"name": name, "dim": 8, "bits": 8})
    with pytest.raises(ValueError, match="must lie in"):
        q.ids_to_codes(torch.tensor([[0, 256]]))
    with pytest.raises(ValueError, match="must lie in"):
        q.ids_to_codes(torch.tensor([[-1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        q.ids_to_codes(torch.tensor([[[0]]]))
    with pytest.raises(ValueError, match="integer"):
        q.ids_to_codes(torch.tensor([[0.0]]))


# LFQ against the library


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("sphere", [False, True])
def test_lfq_ids_match_library(training, sphere):
    torch.manual_seed(1)
    ours, lib = LFQ(8, bits=8, sphere=sphere).train(training), library_lfq(8, sphere).train(training)
    h = torch.randn(3, 60, 8)
    out = ours(h)
    z_lib, ids_lib, _ = lib(h)
    assert torch.equal(out.ids, ids_lib.long())
    torch.testing.assert_close(out.z_q, z_lib)


@pytest.mark.parametrize(
    ("temperature", "scale", "sphere"),
    [(1.0, 0.2, False), (0.01, 0.002, False), (0.01, 1.0, True), (0.05, 0.05, False)],
)
def test_lfq_entropies_match_library(temperature, scale, sphere):
    torch.manual_seed(2)
    ours, lib = LFQ(8, bits=8, temperature=temperature, sphere=sphere), library_lfq(8, sphere)
    h = torch.randn(4, 50, 8) * scale
    out = ours(h)
    (_, _, aux), parts = lib(h, inv_temperature=1 / temperature, return_loss_breakdown=True)
    close = dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.stats["per_sample_entropy"], parts.per_sample_entropy, **close)
    torch.testing.assert_close(out.stats["batch_entropy"], parts.batch_entropy, **close)
    torch.testing.assert_close(out.loss, aux, **close)


def test_lfq_groups_match_library_codebooks():
    """With G groups our entropies are G times the library's means over G codebooks."""
    torch.manual_seed(3)
    ours, lib = LFQ(8, bits=8, groups=2, temperature=1.0), library_lfq(8, num_codebooks=2)
    h = torch.randn(2, 50, 8) * 0.3
    out = ours(h)
    (_, ids_lib, _), parts = lib(h, inv_temperature=1.0, return_loss_breakdown=True)
    assert torch.equal(out.ids, ids_lib[..., 0] * 16 + ids_lib[..., 1])
    close = dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.stats["per_sample_entropy"], 2 * parts.per_sample_entropy, **close)
    torch.testing.assert_close(out.stats["batch_entropy"], 2 * parts.batch_entropy, **close)


def test_groups_keep_per_sample_entropy_and_bound_batch_entropy():
    h = torch.randn(2, 64, 12) * 0.05
    one, three = LFQ(12, bits=12)(h), LFQ(12, bits=12, groups=3)(h)
    torch.testing.assert_close(one.stats["per_sample_entropy"], three.stats["per_sample_entropy"])
    assert three.stats["batch_entropy"] >= one.stats["batch_entropy"] - 1e-4


@pytest.mark.parametrize("k", [0, 1, 4, 5])
def test_mean_code_probs_equals_full_expansion(k):
    p = torch.rand(9, k)
    full = code_probs(p)
    torch.testing.assert_close(full.sum(-1), torch.ones(9))
    torch.testing.assert_close(mean_code_probs(p), full.mean(0))


class LargestTensor(TorchDispatchMode):
    """Record the largest number of elements of any tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_lfq_2_pow_18_trains_without_materialising_codes():
    q = LFQ(32, bits=18, groups=2).train()
    z = torch.randn(4, 64, 32, requires_grad=True)
    start = time.perf_counter()
    with LargestTensor() as probe:
        out = q(z)
        (out.z_q.square().mean() + out.loss).backward()
    assert time.perf_counter() - start < 5
    assert probe.largest < 2**18  # not even one token's full distribution over the codes
    assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert set(out.stats) >= {"usage", "perplexity", "per_sample_entropy", "batch_entropy"}
    assert q.codebook_size == 2**18


def test_lfq_autocast_keeps_entropy_in_float32():
    q = LFQ(24, bits=10, groups=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(2, 16, 24))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.stats["batch_entropy"].dtype == torch.float32


def test_lfq_validation():
    with pytest.raises(ValueError, match="groups=2"):
        LFQ(18, bits=18)
    with pytest.raises(ValueError, match="divide"):
        LFQ(10, bits=10, groups=3)
    with pytest.raises(ValueError, match="int64"):
        BinaryQuantizer(8, bits=64)
    assert math.isclose(LFQ(8, bits=8).temperature, 0.01)
