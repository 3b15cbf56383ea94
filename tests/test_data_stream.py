"""The training stream: samples are pure functions of their index; ranks, workers and resumes agree."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, Dataset

from discotok.data.datamodule import RandomCrops
from discotok.data.stream import SampleStream
from discotok.data.sample import load_sample_photos


class Indices(Dataset):
    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(index)


def batches(stream: SampleStream, n: int, workers: int = 0) -> list[list[int]]:
    loader = DataLoader(stream, stream.batch_size, num_workers=workers)
    return [b.tolist() for b in itertools.islice(loader, n)]


def test_workers_ranks_and_resume_see_the_right_samples():
    single = batches(SampleStream(Indices(), 4), 6)
    assert single[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batches(SampleStream(Indices(), 4), 6, workers=2) == single
    assert batches(SampleStream(Indices(), 4, start_batch=3), 3) == single[3:]
    rank0 = batches(SampleStream(Indices(), 4, rank=0, world_size=2), 3)
    rank1 = batches(SampleStream(Indices(), 4, rank=1, world_size=2), 3)
    assert sorted(sum(rank0 + rank1, [])) == list(range(24))


def test_random_crops_depend_only_on_seed_and_index():
    photos = load_sample_photos(short_side=64)[:3]
    crops = RandomCrops(photos, (16, 16), (0.2, 0.6), seed=1)
    torch.manual_seed(123)
    first = crops[7]
    torch.rand(100)  # the global generator moves on; the sample does not
    assert torch.equal(crops[7], first) and first.shape == (3, 16, 16)
    assert not torch.equal(crops[8], first)
    assert not torch.equal(RandomCrops(photos, (16, 16), (0.2, 0.6), seed=2)[7], first)
