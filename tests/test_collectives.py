"""Quantizers talk to other DDP ranks only in training steps (see ``Quantizer``'s docstring).

Rank 0 runs every quantizer outside training (eval mode, with and without gradients, and
training mode under ``no_grad``) while rank 1 runs nothing: a collective on rank 0 could only
time out. Then, in a training step, both ranks must still agree (the collectives did not go).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from discotok.quantizers import QUANTIZERS

SPECS = {
    "vq": {"name": "vq", "dim": 8, "codebook_size": 16, "dead_code_threshold": 0.5},
    "rvq": {"name": "rvq", "dim": 8, "depth": 3, "codebook_size": 16, "dead_code_threshold": 0.5},
    "fsq": {"name": "fsq", "dim": 8, "levels": [5, 5, 5]},
    "lfq": {"name": "lfq", "dim": 8, "bits": 8, "groups": 2},
    "binary": {"name": "binary", "dim": 8, "bits": 8},
    "scalar": {"name": "scalar", "dim": 8, "levels": [4]},
    "identity": {"name": "identity", "dim": 8, "noise_std": 0.1},
}
TIMEOUT_S = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outside_training(quantizer: torch.nn.Module, z: torch.Tensor) -> None:
    """Every way of running a quantizer that is not a training step."""
    quantizer.eval()
    with torch.inference_mode():
        quantizer(z)
    with torch.no_grad():
        quantizer(z)
    quantizer(z.clone().requires_grad_(True))  # eval mode with gradients (a validation loss)
    with torch.no_grad():
        quantizer.train()(z)


def _phase_one(out: str) -> dict[str, str]:
    """Rank 0 alone runs every quantizer outside training; the first that makes a collective times out."""
    report: dict[str, str] = {}
    for name, spec in SPECS.items():
        torch.manual_seed(0)
        try:
            outside_training(QUANTIZERS.build(spec), torch.randn(2, 12, 8))
        except Exception:  # noqa: BLE001 - a timed-out collective, reported by the quantizer's name
            report[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
            break  # the process group is unusable after a timeout
    torch.save(report, os.path.join(out, "phase1.tmp"))
    os.replace(os.path.join(out, "phase1.tmp"), os.path.join(out, "phase1.pt"))
    return report


def _wait_for_phase_one(out: str) -> dict[str, str]:
    path = os.path.join(out, "phase1.pt")
    deadline = time.monotonic() + 20 * TIMEOUT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("rank 0 never finished running the quantizers alone")
        time.sleep(0.05)
    return torch.load(path, weights_only=True)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        report = _phase_one(out) if rank == 0 else _wait_for_phase_one(out)
        if report:
            return
        for name, spec in SPECS.items():  # training steps: both ranks take part and must agree
            torch.manual_seed(0)
            quantizer = QUANTIZERS.build(spec).train()
            z = torch.randn(2, 12, 8, generator=torch.Generator().manual_seed(rank), requires_grad=True)
            result = quantizer(z)
            (result.z_q.sum() + result.loss).backward()
            gathered: list = [None, None]
            dist.all_gather_object(gathered, {k: v.clone() for k, v in quantizer.state_dict().items()})
            differ = [k for k in gathered[0] if not torch.equal(gathered[0][k], gathered[1][k])]
            if differ and rank == 0:
                torch.save({name: f"training step: {differ} differ across ranks"}, os.path.join(out, "phase2.pt"))
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: gloo's background threads can abort an otherwise clean exit
    # ("terminate called without an active exception"), seen about once in 20 full-suite runs.
    os._exit(0)


def test_no_collective_outside_training_steps(tmp_path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    report = torch.load(tmp_path / "phase1.pt", weights_only=True)
    assert not report, f"a quantizer talked to other ranks outside a training step: {report}"
    assert not (tmp_path / "phase2.pt").exists(), torch.load(tmp_path / "phase2.pt", weights_only=True)
