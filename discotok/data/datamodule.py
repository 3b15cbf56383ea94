"""Image datamodule: the bundled sample photos or any folder of images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from discotok.data.images import ImageLoadError, iter_files, load_image, pil_to_tensor, resize_center_crop
from discotok.data.sample import VALIDATION_PHOTOS, load_sample_photos
from discotok.data.synthetic import GradientMap, dead_leaves
from discotok.data.stream import loader_generator, sample_rng, stream_loader
from discotok.registry import DATAMODULES

log = logging.getLogger(__name__)


AUGMENT_KEYS = ("vflip", "colourize", "brightness", "contrast", "saturation", "hue", "grayscale")


def augmentations(augment: dict | None) -> list:
    """The torchvision transforms of an ``augment`` block (applied after the crop and horizontal flip):
    ``vflip`` (bool), ``colourize`` (the chance that a grey crop is given colours, ``GradientMap``),
    ``brightness`` / ``contrast`` / ``saturation`` / ``hue`` (ColorJitter's ranges, 0 = off) and
    ``grayscale`` (the chance of a grey sample)."""
    augment = dict(augment or {})
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown data.augment setting(s) {unknown}; expected {', '.join(AUGMENT_KEYS)}")
    transforms: list = [v2.RandomVerticalFlip()] if augment.get("vflip") else []
    if augment.get("colourize"):
        transforms.append(GradientMap(float(augment["colourize"])))
    jitter = {k: float(augment.get(k) or 0.0) for k in ("brightness", "contrast", "saturation", "hue")}
    if any(jitter.values()):
        transforms.append(v2.ColorJitter(**jitter))
    if augment.get("grayscale"):
        transforms.append(v2.RandomGrayscale(float(augment["grayscale"])))
    return transforms


class RandomCrops(Dataset):
    """Random resized crops (with horizontal flips) of ``images``; sample ``i`` is a pure function of ``(seed, i)``.

    ``images`` holds PIL images or paths (loaded on access). ``crop_scale`` is the range of
    the crop's area as a fraction of the image's; ``augment`` adds vertical flips, colour
    jitter and grey samples (see ``augmentations``); a ``synthetic`` fraction of the samples are
    dead-leaves images instead (``discotok.data.synthetic``). Any non-negative index is valid, so the
    same index gives the same sample in every process, worker and resumed run.
    """

    def __init__(
        self, images: Sequence, image_size: Sequence[int], crop_scale: Sequence[float], seed: int = 0,
        augment: dict | None = None, synthetic: float = 0.0,
    ) -> None:
        if not 0.0 <= synthetic <= 1.0:
            raise ValueError(f"data.synthetic must be a fraction in [0, 1], got {synthetic}")
        self.images = list(images)
        self.image_size = tuple(image_size)
        self.synthetic = synthetic
        self.seed = seed
        self.transform = v2.Compose([
            v2.RandomResizedCrop(tuple(image_size), scale=tuple(crop_scale), antialias=True), v2.RandomHorizontalFlip(),
            *augmentations(augment),
        ])

    def __getitem__(self, index: int) -> Tensor:
        with sample_rng(self.seed, index):  # torchvision draws from the global generator
            if self.synthetic and float(torch.rand(())) < self.synthetic:
                return pil_to_tensor(dead_leaves(self.image_size))
            item = self.images[int(torch.randint(len(self.images), ()))]
            img = item if isinstance(item, Image.Image) else load_image(item)
            return pil_to_tensor(self.transform(img))


class CenterCrops(Dataset):
    """Deterministic crops: every non-overlapping tile of in-memory photos, or one centre crop per file."""

    def __init__(self, images: Sequence, image_size: Sequence[int], tile: bool) -> None:
        self.image_size = tuple(image_size)
        self.items: list = []
        h, w = self.image_size
        for img in images:
            if tile and isinstance(img, Image.Image):
                self.items += [
                    img.crop((x, y, x + w, y + h))
                    for y in range(0, img.height - h + 1, h)
                    for x in range(0, img.width - w + 1, w)
                ]
            else:
                self.items.append(img)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tensor:
        item = self.items[index]
        img = item if isinstance(item, Image.Image) else load_image(item)
        return pil_to_tensor(resize_center_crop(img, self.image_size))


def readable_images(folder: str | Path) -> list[Path]:
    """Files under ``folder`` whose header PIL can read; the others are logged and skipped."""
    good = []
    for path in iter_files(folder):
        try:
            with Image.open(path) as img:
                img.verify()
            good.append(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, by name
            log.warning("skipping %s", ImageLoadError(path, f"not a readable image ({type(err).__name__})"))
    return good


DEFAULT_IMAGE_SIZE = (64, 64)


@DATAMODULES.register("images")
class ImageDataModule(L.LightningDataModule):
    """Training crops and validation images from the sample photos or a folder.

    ``source="sample_photos"`` trains on the photos bundled with the dependencies
    (``discotok.data.sample``) and validates on tiles of whole photos held out of training
    (``VALIDATION_PHOTOS``); any other value is a folder of images, the last ``val_fraction``
    of its sorted files held out. ``augment`` configures the training crops' augmentations and
    ``synthetic`` the fraction of dead-leaves images among them.

    Training reads an endless stream of random crops in which sample ``i`` depends only on
    ``(seed, i)``: under DDP every rank reads its own samples, and a resumed run (the stream
    starts at the batch its checkpoint reached) sees exactly the batches the uninterrupted
    run would have. The training length is ``trainer.max_steps``.
    """

    @staticmethod
    def tokenizer_fields(config: dict) -> dict:
        """The tokenizer config fields a data config of this module implies: the image size."""
        return {"image_size": [int(s) for s in config.get("image_size", DEFAULT_IMAGE_SIZE)]}

    def __init__(
        self,
        source: str = "sample_photos",
        image_size: Sequence[int] = DEFAULT_IMAGE_SIZE,
        batch_size: int = 16,
        num_workers: int = 0,
        val_samples: int = 64,
        val_fraction: float = 0.1,
        crop_scale: Sequence[float] = (0.06, 0.4),
        seed: int = 0,
        augment: dict | None = None,
        synthetic: float = 0.0,
    ) -> None:
        super().__init__()
        self.source = source
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_samples = val_samples
        self.val_fraction = val_fraction
        self.crop_scale = tuple(crop_scale)
        self.seed = seed
        self.augment = dict(augment or {})
        self.synthetic = synthetic
        augmentations(self.augment)  # a misspelt key fails here, before any data is read

    def setup(self, stage: str | None = None) -> None:
        if self.source == "sample_photos":
            train, val, tile = load_sample_photos(), load_sample_photos(names=VALIDATION_PHOTOS), True
            held_out = f"tiles of whole photos held out of training ({', '.join(VALIDATION_PHOTOS)})"
        else:
            files = readable_images(self.source)
            if len(files) < 2:
                raise ValueError(f"data folder {self.source!r} holds {len(files)} readable image(s); need at least 2")
            n_val = max(1, round(len(files) * self.val_fraction))
            train, val, tile = files[:-n_val], files[-n_val:], False
            held_out = f"centre crops of the last {n_val} of {len(files)} files of {self.source}, held out of training"
        self.train_set = RandomCrops(train, self.image_size, self.crop_scale, self.seed, self.augment, self.synthetic)
        val_set = CenterCrops(val, self.image_size, tile)
        keep = torch.linspace(0, len(val_set) - 1, min(self.val_samples, len(val_set))).round().long().tolist()
        self.val_set = torch.utils.data.Subset(val_set, keep)
        self.val_description = f"{len(keep)} {held_out}"

    def train_dataloader(self) -> DataLoader:
        """The endless training stream, for this rank, from the batch a resumed run has reached."""
        return stream_loader(self.train_set, self.batch_size, self.num_workers, self.trainer, self.seed)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers, generator=loader_generator(self.seed))
