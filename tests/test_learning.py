"""Learning, judged the way users judge it: on photos the model never trained on, against the
classical baseline of the same bits (a thumbnail scaled back up), not against its own start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from discotok.data.datamodule import ImageDataModule
from discotok.data.sample import TRAINING_PHOTOS, VALIDATION_PHOTOS
from discotok.defaults import config_dir
from discotok.metrics import psnr, thumbnail, thumbnail_bits
from discotok.train.module import TokenizerModule, warmup_cosine
from tests.conftest import tiny_tokenizer_config

STEPS = 60
THUMB = 2  # a 2x2 thumbnail: 96 bits, no more than the tiny tokenizers' 16 tokens carry (96 and 112)


DEFAULT_DATA = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "data" / "sample_photos.yaml"))


def held_out_and_training(size: int = 32) -> tuple[torch.Tensor, ImageDataModule]:
    """The default data (configs/data/sample_photos.yaml: crops, augmentations, dead leaves) at ``size``:
    32x32 tiles of whole photos no training crop comes from, and the datamodule."""
    settings = {k: DEFAULT_DATA[k] for k in ("crop_scale", "synthetic", "augment")}
    dm = ImageDataModule(image_size=(size, size), val_samples=96, seed=0, **settings)
    dm.setup()
    return torch.stack([dm.val_set[i] for i in range(len(dm.val_set))]), dm


def train_tiny(config: dict, dm: ImageDataModule, seed: int, steps: int = STEPS, lr: float = 3e-3) -> TokenizerModule:
    """``steps`` seeded AdamW steps of the tokenizer ``config`` on the default's training crops (batch 16)."""
    torch.manual_seed(seed)
    module = TokenizerModule(config)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 5, steps, 0.1))
    for step in range(steps):
        batch = torch.stack([dm.train_set[seed * 100_000 + step * 16 + i] for i in range(16)])
        out = module.tokenizer(batch)
        loss, _ = module.reconstruction(out.x_hat, batch)
        opt.zero_grad()
        (loss + out.quantized.loss).backward()
        opt.step()
        sched.step()
    return module


def test_validation_photos_never_enter_training():
    assert not set(VALIDATION_PHOTOS) & set(TRAINING_PHOTOS)
    _, dm = held_out_and_training()
    assert "held out of training" in dm.val_description and "coffee.png" in dm.val_description


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    return held_out_and_training()[0]


@pytest.fixture(scope="module", params=["fsq", "vq"])
def trained(request) -> tuple[str, TokenizerModule]:
    """A tiny tokenizer of each quantizer after ``STEPS`` seeded steps: FSQ 5x5x5 (16 tokens, 112 bits),
    VQ 64 codes (16 tokens, exactly 96 bits)."""
    config = tiny_tokenizer_config(request.param, encoder="patch")  # the default's architecture, tiny
    return request.param, train_tiny(config, held_out_and_training()[1], seed=0)


def held_out_psnr(module: TokenizerModule, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(psnr(module.tokenizer.eval()(x).x_hat, x).mean())


def test_training_improves_photos_it_never_saw(trained, held_out):
    """Measured on the project's machine, seed 0 (tiny patch tokenizers): FSQ 10.2 -> 15.6 dB, VQ 9.9 -> 15.2 dB in 60 steps."""
    quantizer, module = trained
    torch.manual_seed(0)
    untrained = TokenizerModule(tiny_tokenizer_config(quantizer, encoder="patch"))
    before, after = held_out_psnr(untrained, held_out), held_out_psnr(module, held_out)
    assert after > before + 2.0, f"{quantizer}: {before:.2f} dB untrained, {after:.2f} dB after {STEPS} steps"


@pytest.fixture(scope="module")
def trained_from_data(trained) -> TokenizerModule:
    """The same tiny tokenizers and steps with the patch encoder's and decoder's ``data_init`` (a linear path
    started at the first batch's principal components and least-squares decoder)."""
    config = tiny_tokenizer_config(trained[0], encoder="patch")
    config["encoder"]["data_init"] = config["decoder"]["data_init"] = True
    return train_tiny(config, held_out_and_training()[1], seed=0)


def test_a_data_driven_start_learns_faster(trained, trained_from_data, held_out):
    """Measured on the project's machine, seed 0, 60 steps: FSQ 15.6 -> 19.3 dB, VQ 15.2 -> 18.0 dB with
    ``data_init`` (the 2x2 thumbnail: 21.0 dB)."""
    quantizer, plain = trained
    before, after = held_out_psnr(plain, held_out), held_out_psnr(trained_from_data, held_out)
    assert after > before + 2.0, f"{quantizer}: {before:.2f} dB from a random start, {after:.2f} dB from the data's"


@pytest.mark.xfail(strict=True, reason=(
    "not yet: after 60 steps the tiny patch tokenizers score 15.6 (FSQ) and 15.2 dB (VQ) on the held-out tiles, "
    "19.3 and 18.0 dB with data_init, below the 2x2 thumbnail (21.0 dB). With more bits per token (FSQ "
    "[16, 16, 8, 5], 213 bits, the thumbnail still 2x2) and data_init: 21.3-21.6 dB for seeds 0-2 after 60-100 "
    "steps, short of the 0.5 dB margin; the ideal code of that size (block colours by FSQ, bicubic) reaches "
    "21.7 dB: the thumbnail's near-exact flat tiles (7 of 96 at 39-42 dB) set the per-image mean (issue 15). "
    "Strict: the day they pass, this marker must go."))
def test_tiny_tokenizer_beats_the_thumbnail_of_its_bits_on_held_out_photos(trained, held_out):
    """A few dozen steps on crops of the training photos beat a 2x2 thumbnail (96 bits, no more than the
    tokenizer's) on tiles of the held-out photos."""
    quantizer, module = trained
    tok = module.tokenizer
    assert thumbnail_bits(THUMB) <= tok.modality.num_tokens * tok.bits_per_token  # the baseline has no more bits
    ours, baseline = held_out_psnr(module, held_out), float(psnr(thumbnail(held_out, THUMB), held_out).mean())
    assert ours > baseline + 0.5, f"{quantizer}: {ours:.2f} dB on held-out tiles vs the 2x2 thumbnail's {baseline:.2f} dB"
