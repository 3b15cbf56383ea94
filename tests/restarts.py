"""Recording a VectorQuantizer's dead-code restarts on each DDP rank, and checking them across ranks."""

from __future__ import annotations

import torch

from discotok.quantizers.vq import VectorQuantizer


def record_restarts(vq: VectorQuantizer, log: list[dict]) -> None:
    """Append to ``log``, at every restart of ``vq``, the dead codes, their values before and after, and the
    batch (this rank's quantizer input) the restart ran on."""
    original = vq._restart_dead

    def recording(flat: torch.Tensor) -> None:
        dead = (vq.cluster_size < vq.dead_code_threshold).nonzero().flatten()
        before = vq.codebook.detach()[dead].clone()
        original(flat)
        if dead.numel():
            log.append({"dead": dead.clone(), "before": before, "after": vq.codebook.detach()[dead].clone(),
                        "batch": flat.detach().clone()})

    vq._restart_dead = recording


def rows_of(rows: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Which of ``rows`` (K, D) equal some row of ``batch`` (M, D) exactly."""
    return (rows[:, None] == batch[None]).all(-1).any(1)


def restart_problems(rank0: list[dict], rank1: list[dict]) -> list[str]:
    """What is wrong with two ranks' restart logs: none, different or unchanged codes, codes not from rank 0's batch."""
    if not rank0:
        return ["no dead code was restarted: the test would not exercise the broadcast"]
    problems = [] if len(rank0) == len(rank1) else [f"rank 0 restarted {len(rank0)} times, rank 1 {len(rank1)} times"]
    for i, (a, b) in enumerate(zip(rank0, rank1)):
        if not torch.equal(a["dead"], b["dead"]):
            problems.append(f"restart {i}: the ranks restarted different codes")
            continue
        if not torch.equal(a["after"], b["after"]):
            problems.append(f"restart {i}: restarted codes differ across ranks")
        if (a["after"] == a["before"]).all(1).any():
            problems.append(f"restart {i}: a restarted code did not change")
        for rank, log in ((0, a), (1, b)):
            if not rows_of(log["after"], a["batch"]).all():
                problems.append(f"restart {i}: rank {rank}'s restarted codes are not what rank 0 broadcast (rows of its batch)")
    return problems
