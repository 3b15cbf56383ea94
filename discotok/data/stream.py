"""The training stream shared by the datamodules: endless, resumable, rank-aware, seeded per sample."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` of a stream seeded by ``seed`` (32 bits: all the CPU generator keeps)."""
    return (seed * 0x9E3779B9 + index * 0x85EBCA6B + 1) % (1 << 32)


@contextmanager
def sample_rng(seed: int, index: int) -> Iterator[None]:
    """Seed the global CPU generator for sample ``index`` and restore it afterwards: transforms that
    draw from it (torchvision's, ``torch.randint``) become pure functions of ``(seed, index)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(seed, index))
        yield


class SampleStream(IterableDataset):
    """An endless, resumable, rank-aware stream over a dataset indexed 0, 1, 2, ...

    Global batch ``b`` holds samples ``b * world_size * batch_size`` onwards; rank ``r`` takes
    its ``r``-th slice of ``batch_size``. Iteration starts at batch ``start_batch`` (the
    batches a resumed run has already trained on). DataLoader workers take whole batches
    in turn, so with any number of workers the stream yields the same samples in the same order.
    """

    def __init__(self, dataset: Dataset, batch_size: int, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.start_batch = start_batch
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[Tensor]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for batch in itertools.count(self.start_batch + worker, workers):
            first = (batch * self.world_size + self.rank) * self.batch_size
            for index in range(first, first + self.batch_size):
                yield self.dataset[index]


def loader_generator(seed: int) -> torch.Generator:
    """A loader's own generator: starting an iterator draws a seed from it, not from the global
    generator, so a resumed run's random draws (dead-code restarts...) stay those of the uninterrupted run."""
    return torch.Generator().manual_seed(seed)


def stream_loader(
    dataset: Dataset | IterableDataset, batch_size: int, num_workers: int, trainer: L.Trainer | None, seed: int
) -> DataLoader:
    """The training loader: a ``SampleStream`` over an index-pure ``dataset`` for this rank, from the
    batch a resumed run has reached; an ``IterableDataset`` (WebDataset shards) is batched as it comes."""
    if not isinstance(dataset, IterableDataset):
        start = trainer.global_step * trainer.accumulate_grad_batches if trainer else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        dataset = SampleStream(dataset, batch_size, start, rank, world)
    return DataLoader(
        dataset, batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
        generator=loader_generator(seed),
    )
