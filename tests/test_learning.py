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


FEW_STEP_QUANTIZERS = {  # 10 bits per 8x8 cell: 640 bits per 64x64 image, as the default spends
    "fsq": {"name": "fsq", "dim": 3, "levels": [16, 8, 8]},
    "vq": {"name": "vq", "dim": 3, "codebook_size": 1024},
}
FEW_STEP_THUMB = 5  # 600 bits: the largest thumbnail with no more bits than the tokenizer's 640


def few_step_config(quantizer: str) -> dict:
    """The default's architecture (patch encoder and decoder, 8x8 cells at 64x64) made tiny (32 channels, one
    block) with a data-driven start: latent 3 = the quantizer's own width, so the encoder's principal
    components reach the code channels unmixed, and a 3x3 least-squares decoder path."""
    enc = {"latent_dim": 3, "patch_size": 8, "width": 32, "depth": 1, "data_init": True}
    return {
        "encoder": {"name": "patch", **enc, "init_scale": 1.0},
        "quantizer": dict(FEW_STEP_QUANTIZERS[quantizer]),
        "decoder": {"name": "patch", **enc, "linear_kernel": 3},
        "image_size": [64, 64],
    }


def pooled_psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB of the mean squared error over the whole set (images in [-1, 1], reconstructions clamped)."""
    return float(10 * torch.log10(4 / (x_hat.float().clamp(-1, 1) - x).pow(2).mean()))


@pytest.mark.parametrize("quantizer", sorted(FEW_STEP_QUANTIZERS))
def test_tiny_tokenizer_beats_the_thumbnail_of_its_bits_on_held_out_photos(quantizer):
    """60 seeded steps on crops of the training photos beat a 5x5 thumbnail (600 bits, no more than the
    tokenizer's 640) on the 56 64x64 tiles of the held-out photos: in the pooled error by 0.5 dB and on two
    thirds of the tiles. Measured on the project's machine, seeds 0-2, one and two threads: pooled +0.75 to
    +1.15 dB (FSQ), +1.07 to +1.23 dB (VQ) over the thumbnail's 18.82 dB, 42-45 of 56 tiles won. The per-image
    mean is level (20.50-21.09 dB against 20.76): the thumbnail spends 24 bits on each colour and reproduces two
    near-flat tiles at 38-40 dB where 10 bits per cell stop near 27-32 dB (docs/default.md)."""
    x, dm = held_out_and_training(64)
    module = train_tiny(few_step_config(quantizer), dm, seed=0)
    tok = module.tokenizer.eval()
    assert thumbnail_bits(FEW_STEP_THUMB) <= tok.modality.num_tokens * tok.bits_per_token == 640
    with torch.no_grad():
        x_hat = tok(x).x_hat
    baseline = thumbnail(x, FEW_STEP_THUMB)
    ours, theirs = pooled_psnr(x_hat, x), pooled_psnr(baseline, x)
    won = float((psnr(x_hat, x) > psnr(baseline, x)).float().mean())
    report = f"{quantizer}: pooled {ours:.2f} dB vs the 5x5 thumbnail's {theirs:.2f} dB, {won:.0%} of tiles won"
    assert ours > theirs + 0.5 and won >= 2 / 3, report
