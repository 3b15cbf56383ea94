"""Audio discriminators (mpd, msstft, multi): outputs per sub-discriminator, and a few GAN steps on speech."""

from __future__ import annotations

import pytest
import torch

from discotok.discriminators import DISCRIMINATORS
from discotok.losses.adversarial import feature_matching, hinge_d_loss, hinge_g_loss

MPD = {"name": "mpd", "periods": [2, 3, 5], "widths": [8, 16, 16]}
MSSTFT = {"name": "msstft", "n_ffts": [512, 256, 128], "filters": 8}
MULTI = {"name": "multi", "discriminators": [MPD, MSSTFT]}


@pytest.mark.parametrize("channels", [1, 2])
def test_one_output_per_sub_discriminator(channels):
    x = torch.randn(2, channels, 3001)
    for spec, count in ((MPD, 3), (MSSTFT, 3), (MULTI, 6)):
        result = DISCRIMINATORS.build(with_channels(spec, channels))(x)
        assert len(result.logits) == len(result.features) == count
        for logits, feats in zip(result.logits, result.features):
            assert logits.shape[:2] == (2, 1) and feats[-1] is logits and len(feats) >= 3
    periods = DISCRIMINATORS.build(MPD)(torch.randn(2, 1, 3001)).logits
    assert [p.shape[-1] for p in periods] == [2, 3, 5]  # the folded period axis


def with_channels(spec: dict, channels: int) -> dict:
    if spec["name"] == "multi":
        return {**spec, "discriminators": [with_channels(s, channels) for s in spec["discriminators"]]}
    return {**spec, "in_channels": channels}


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        DISCRIMINATORS.build({"name": "msstft", "n_ffts": [510]})
    with pytest.raises(ValueError, match="periods"):
        DISCRIMINATORS.build({"name": "mpd", "periods": []})
    with pytest.raises(ValueError, match="nest"):
        DISCRIMINATORS.build({"name": "multi", "discriminators": [MULTI]})


def test_gan_steps_on_speech_move_the_hinge_losses(speech_clips):
    torch.manual_seed(0)
    real = torch.stack([c[:, 2000:4048] for c in speech_clips[:2]])
    fake = (0.1 * torch.randn_like(real)).requires_grad_()  # the "generator": a waveform being learned
    disc = DISCRIMINATORS.build(MULTI)
    d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.9))
    g_opt = torch.optim.Adam([fake], lr=1e-2)

    def d_loss() -> torch.Tensor:
        return hinge_d_loss(disc(real), disc(fake.detach()))

    before = d_loss().item()
    for _ in range(3):
        d_opt.zero_grad()
        d_loss().backward()
        d_opt.step()
    assert d_loss().item() < before

    for p in disc.parameters():
        p.requires_grad_(False)
    g_before = hinge_g_loss(disc(fake)).item()
    for _ in range(3):
        g_opt.zero_grad()
        hinge_g_loss(disc(fake)).backward()
        g_opt.step()
    assert hinge_g_loss(disc(fake)).item() < g_before

    fm = feature_matching(disc(real), disc(fake))
    fake.grad = None
    fm.backward()
    assert torch.isfinite(fm) and fm > 0 and fake.grad.abs().sum() > 0


def test_discriminator_config_builds():
    """configs/discriminator/multi.yaml (mpd + msstft at their published sizes) composes and runs."""
    from hydra import compose, initialize_config_dir

    from discotok.train.run import config_dir, plain

    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=["experiment=audio_tiny", "+discriminator=multi"])
    spec = plain(cfg.discriminator)
    assert [part["name"] for part in spec["discriminators"]] == ["mpd", "msstft"]
    assert len(DISCRIMINATORS.build(spec)(torch.randn(1, 1, 4096)).logits) == 10
