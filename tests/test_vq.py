"""VectorQuantizer: contract, oracle ids against vector-quantize-pytorch, EMA, k-means, restarts, DDP."""

from __future__ import annotations

import io
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load, save

from discotok.quantizers import QUANTIZERS, codebook_stats
from discotok.quantizers.vq import VectorQuantizer
from tests.oracle import assert_same_as_library
from tests.restarts import record_restarts, restart_problems

torch.set_num_threads(2)


def clustered(n: int, centres: torch.Tensor, spread: float = 0.05, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, centres.shape[0], (n,), generator=g)
    return centres[pick] + spread * torch.randn(n, centres.shape[1], generator=g)


@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("code_dim", [None, 4])
def test_ids_to_codes_equals_z_q(ema: bool, cosine: bool, code_dim: int | None) -> None:
    torch.manual_seed(0)
    vq = QUANTIZERS.build(
        {"name": "vq", "dim": 8, "codebook_size": 32, "code_dim": code_dim, "cosine": cosine, "ema": ema}
    )
    z = torch.randn(3, 20, 8)
    vq.train()
    vq(z)  # k-means init and one update
    vq.eval()
    out = vq(z)
    assert out.ids.shape == (3, 20) and out.ids.dtype == torch.int64
    assert out.z_q.shape == z.shape
    torch.testing.assert_close(vq.ids_to_codes(out.ids), out.z_q, rtol=0, atol=1e-6)
    assert vq.bits_per_token == 5.0


@pytest.mark.parametrize("cosine", [False, True])
def test_oracle_same_ids_as_vector_quantize_pytorch(cosine: bool) -> None:
    from vector_quantize_pytorch import VectorQuantize

    torch.manual_seed(1)
    ours = VectorQuantizer(dim=12, codebook_size=512, cosine=cosine, kmeans_init=False).eval()
    theirs = VectorQuantize(
        dim=12, codebook_size=512, use_cosine_sim=cosine, kmeans_init=False, sync_codebook=False
    ).eval()
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.codebook.unsqueeze(0))
    assert_same_as_library(ours, theirs, torch.randn(4, 300, 12), atol=1e-6)


def test_stats_on_hand_built_input() -> None:
    ids = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    stats = codebook_stats(ids, 4)
    assert stats["usage"].item() == pytest.approx(0.5)
    assert stats["perplexity"].item() == pytest.approx(2.0)

    vq = VectorQuantizer(dim=2, codebook_size=4, kmeans_init=False).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    z = torch.tensor([[[0.9, 0.1], [0.1, 0.9], [1.1, 0.0], [0.0, 1.2]]])
    out = vq(z)
    assert out.ids.tolist() == [[0, 1, 0, 1]]
    assert out.stats["usage"].item() == pytest.approx(0.5)
    assert out.stats["perplexity"].item() == pytest.approx(2.0)


@pytest.mark.parametrize("ema", [True, False])
def test_gradients_reach_input(ema: bool) -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, codebook_size=16, code_dim=4, ema=ema).train()
    z = torch.randn(2, 10, 8, requires_grad=True)
    out = vq(z)
    (out.z_q.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    if not ema:
        assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_loss_is_weighted_commitment() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=4, codebook_size=8, commitment_weight=0.5, kmeans_init=False).eval()
    z = torch.randn(2, 5, 4)
    out = vq(z)
    expected = 0.5 * (z - vq.lookup(out.ids)).square().mean()
    torch.testing.assert_close(out.loss, expected)


def test_ema_update_moves_codes_toward_data() -> None:
    vq = VectorQuantizer(dim=2, codebook_size=2, kmeans_init=False, decay=0.9).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        vq.embed_sum.copy_(vq.codebook)
    data = torch.tensor([2.0, 1.0]) + 0.01 * torch.randn(1, 64, 2)
    before = (vq.codebook[0] - data.mean((0, 1))).norm()
    for _ in range(5):
        vq(data)
    after = (vq.codebook[0] - data.mean((0, 1))).norm()
    assert after < 0.7 * before
    assert vq.cluster_size[0] > vq.cluster_size[1]


@pytest.mark.parametrize("cosine", [False, True])
def test_kmeans_init_beats_random_init(cosine: bool) -> None:
    torch.manual_seed(0)
    centres = 3 * torch.randn(16, 6)
    x = clustered(1024, centres).view(4, 256, 6)

    def error(vq: VectorQuantizer) -> float:
        vq.eval()
        out = vq(x)
        target = torch.nn.functional.normalize(x, dim=-1) if cosine else x
        return (out.z_q - target).square().mean().item()

    kmeans = VectorQuantizer(dim=6, codebook_size=16, cosine=cosine, kmeans_init=True, decay=0.99)
    assert not kmeans.initted
    kmeans.train()(x)
    assert kmeans.initted
    rand = VectorQuantizer(dim=6, codebook_size=16, cosine=cosine, kmeans_init=False)
    assert error(kmeans) < 0.5 * error(rand)


def test_kmeans_with_fewer_vectors_than_codes() -> None:
    vq = VectorQuantizer(dim=4, codebook_size=64).train()
    vq(torch.randn(1, 10, 4))
    assert vq.initted and torch.isfinite(vq.codebook).all()


@pytest.mark.parametrize("ema", [True, False])
def test_dead_code_is_restarted(ema: bool) -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=3, codebook_size=4, ema=ema, kmeans_init=False, dead_code_threshold=0.5)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [100, 100, 100]]))
        vq.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 0.1]))
    z = torch.rand(1, 32, 3, requires_grad=True)
    out = vq.train()(z)
    (out.z_q.sum() + out.loss).backward()
    new = vq.codebook[3].detach()
    assert (z.detach()[0] == new).all(1).any(), "dead code must be re-seeded from the batch"
    assert vq.cluster_size[3] == pytest.approx(0.5)


def test_bf16_input_and_buffers_saved() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, codebook_size=64, cosine=True)
    z = torch.randn(2, 16, 8)
    vq.train()(z)
    vq.eval()
    out = vq(z.bfloat16())
    assert out.z_q.dtype == torch.bfloat16 and out.ids.dtype == torch.int64
    state = load(save(vq.state_dict()))
    assert {"codebook", "embed_sum", "cluster_size", "initted"} <= set(state)
    other = VectorQuantizer(dim=8, codebook_size=64, cosine=True)
    other.load_state_dict(state)
    assert other.initted and torch.equal(other(z).ids, vq(z).ids)
    buf = io.BytesIO()
    torch.save(vq, buf)  # the search scratch is not pickled along
    assert buf.tell() < 64 * 1024


def test_check_ids_messages() -> None:
    vq = VectorQuantizer(dim=4, codebook_size=16, kmeans_init=False)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        vq.ids_to_codes(torch.zeros(2, 3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        vq.ids_to_codes(torch.tensor([[0, 16]]))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        vq.ids_to_codes(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="integer"):
        vq.ids_to_codes(torch.zeros(1, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, data: torch.Tensor, out_dir: str, break_broadcast: bool = False) -> None:
    import torch.distributed as dist

    import discotok.quantizers.vq as vq_module

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if break_broadcast:  # what the checks must catch: each rank restarting codes from its own batch
        vq_module.broadcast_ = lambda *tensors, src=0: None
    try:
        torch.manual_seed(0)
        vq = VectorQuantizer(dim=4, codebook_size=32, dead_code_threshold=0.5, kmeans_init=False, decay=0.5).train()
        restarts: list[dict] = []
        record_restarts(vq, restarts)
        torch.manual_seed(100 + rank)  # ranks sample differently: only broadcasts can agree
        for step in range(4):
            vq(data[rank, step])
        torch.save(vq.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        torch.save(restarts, os.path.join(out_dir, f"restarts{rank}.pt"))
        torch.manual_seed(0)
        plain = VectorQuantizer(dim=4, codebook_size=32, kmeans_init=False).train()
        plain(data[rank, 0])
        torch.save(plain.state_dict(), os.path.join(out_dir, f"plain{rank}.pt"))
    finally:
        dist.destroy_process_group()


def ddp_data() -> torch.Tensor:
    """Per rank and step, 48 vectors around 3 points (different per rank): most of the 32 codes stay
    unused, fall below the dead-code threshold and are restarted."""
    centres = torch.randn(2, 3, 4) * 3
    data = torch.stack([clustered(4 * 2 * 24, centres[r], seed=r).reshape(4, 2, 24, 4) for r in (0, 1)])
    data[1] += 2.0
    return data


def run_ddp(data: torch.Tensor, out, break_broadcast: bool = False) -> tuple[list[dict], list[dict]]:
    mp.spawn(_ddp_worker, args=(_free_port(), data, str(out), break_broadcast), nprocs=2)
    return tuple(torch.load(out / f"restarts{r}.pt", weights_only=True) for r in (0, 1))


def test_ddp_ranks_keep_identical_codebooks(tmp_path) -> None:
    data = ddp_data()
    restarts = run_ddp(data, tmp_path)
    assert not restart_problems(*restarts), restart_problems(*restarts)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in a:
        assert torch.equal(a[key], b[key]), key

    # EMA statistics summed over ranks equal one process seeing both ranks' batches.
    torch.manual_seed(0)
    single = VectorQuantizer(dim=4, codebook_size=32, kmeans_init=False).train()
    single(torch.cat([data[0, 0], data[1, 0]]))
    for r in (0, 1):
        ranked = torch.load(tmp_path / f"plain{r}.pt", weights_only=True)
        for key in ("codebook", "embed_sum", "cluster_size"):
            torch.testing.assert_close(ranked[key], single.state_dict()[key])


def test_ddp_restart_checks_catch_a_missing_broadcast(tmp_path) -> None:
    problems = restart_problems(*run_ddp(ddp_data(), tmp_path, break_broadcast=True))
    assert any("differ across ranks" in p for p in problems) and any("rank 1's restarted codes" in p for p in problems)


def test_chunked_search_matches_brute_force_and_reuses_scratch() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=5, codebook_size=4096, kmeans_init=False).eval()
    z = torch.randn(1, 1000, 5)  # 4096 codes -> 256-row chunks: 3 full chunks and a remainder
    out = vq(z)
    brute = (z[0, :, None] - vq.codebook[None]).square().sum(-1).argmin(-1)
    assert torch.equal(out.ids[0], brute)
    scratch = vq.search._scratch
    assert scratch is not None and scratch.numel() <= 1 << 20
    vq(torch.randn(2, 700, 5))
    assert vq.search._scratch.data_ptr() == scratch.data_ptr(), "scratch buffer must be reused"


def test_search_after_inference_mode_still_trains() -> None:
    """A scratch made under inference_mode (e.g. validation) must not break the next training step."""
    vq = VectorQuantizer(dim=5, codebook_size=64, kmeans_init=False)
    with torch.inference_mode():
        vq.eval()(torch.randn(2, 10, 5))
    vq.train()
    z = torch.randn(2, 10, 5, requires_grad=True)
    out = vq(z)
    (out.z_q.sum() + out.loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_dot_product_search_and_forced_projections():
    """``dot_product``: the code of highest h·c (IBQ), not the nearest; ``projections``: Linear maps at equal dims."""
    q = QUANTIZERS.build({"name": "vq", "dim": 2, "codebook_size": 2, "ema": False, "kmeans_init": False,
                          "cosine": False, "dot_product": True, "projections": True}).eval()
    assert isinstance(q.project_in, torch.nn.Linear) and isinstance(q.project_out, torch.nn.Linear)
    with torch.no_grad():
        q.project_in.weight.copy_(torch.eye(2)), q.project_in.bias.zero_()
        q.codebook.copy_(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    h = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    assert q(h).ids.tolist() == [[1, 0]]  # Euclidean would pick code 0 for [1, 0]
    with pytest.raises(ValueError, match="excludes cosine"):
        QUANTIZERS.build({"name": "vq", "dim": 2, "cosine": True, "dot_product": True})
