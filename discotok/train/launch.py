"""Start one training process per device of this node for DDP, the way ``torchrun`` would.

Lightning's own launchers do not suit a Hydra app: ``strategy=ddp`` re-runs the command
line for ranks 1..N-1 (which re-runs a whole ``-m`` sweep, and a ``discotok train``
command line is not a script it can re-run), and ``ddp_spawn`` runs only ``fit`` in the
workers, so the steps, the final validation and the export happen elsewhere. Here every
worker runs the whole training function with the usual DDP environment variables set
(``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``NODE_RANK``), so Lightning
sees processes started externally and only joins them into one process group. The parent
only waits: its own environment is untouched, so the next job of a sweep starts clean.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.plugins.environments.lightning import find_free_network_port


def launched_externally() -> bool:
    """Whether a cluster launcher (SLURM tasks, torchrun, a parent discotok process) started this process."""
    return "LOCAL_RANK" in os.environ or SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def processes_to_start(trainer: dict[str, Any]) -> int:
    """How many DDP processes to start here: the device count for ``strategy: ddp`` on one node, else 1."""
    if trainer.get("strategy") != "ddp" or int(trainer.get("num_nodes", 1)) != 1 or launched_externally():
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if devices in (-1, "-1", "auto"):
        accelerator = str(trainer.get("accelerator", "auto"))
        count = torch.cuda.device_count() if accelerator in ("gpu", "cuda", "auto") else os.cpu_count()
        return max(1, count or 1)
    return int(devices)


def _worker(local_rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(local_rank), NODE_RANK="0",
    )
    fn(*args)


def launch(world_size: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``world_size`` fresh processes joined by DDP environment variables.

    Arguments are pickled (``spawn``), so they must be picklable; an exception in any worker
    is raised here with the worker's traceback.
    """
    mp.start_processes(_worker, args=(world_size, find_free_network_port(), fn, args), nprocs=world_size, start_method="spawn")
