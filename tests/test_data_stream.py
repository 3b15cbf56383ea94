"""The training stream: samples are pure functions of their index; ranks, workers and resumes agree."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from discotok.data.datamodule import ImageDataModule, RandomCrops
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
    crops = RandomCrops(photos, (16, 16), (0.2, 0.6), seed=1, augment=AUGMENT)
    torch.manual_seed(123)
    first = crops[7]
    torch.rand(100)  # the global generator moves on; the sample does not
    assert torch.equal(crops[7], first) and first.shape == (3, 16, 16)
    assert not torch.equal(crops[8], first)
    assert not torch.equal(RandomCrops(photos, (16, 16), (0.2, 0.6), seed=2)[7], first)


AUGMENT = {"vflip": True, "brightness": 0.3, "contrast": 0.3, "saturation": 0.6, "hue": 0.5, "grayscale": 0.1}


def test_augmentations_change_colours_and_make_grey_samples():
    photos = load_sample_photos(short_side=64)[:1]  # astronaut: a colour photo
    plain = RandomCrops(photos, (16, 16), (0.2, 0.6), seed=1)
    jittered = RandomCrops(photos, (16, 16), (0.2, 0.6), seed=1, augment={**AUGMENT, "grayscale": 0.5})
    samples = torch.stack([jittered[i] for i in range(64)])
    grey = (samples.amax(1) - samples.amin(1)).flatten(1).amax(1) == 0
    assert 10 < int(grey.sum()) < 54  # about half grey at grayscale 0.5; the plain crops never are
    assert all((plain[i].amax(0) - plain[i].amin(0)).amax() > 0 for i in range(8))
    assert not torch.equal(jittered[0], plain[0])


def test_unknown_augmentation_is_refused_by_name():
    with pytest.raises(ValueError, match="'hue_shift'"):
        ImageDataModule(augment={"hue_shift": 0.5})
