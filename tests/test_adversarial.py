"""Adversarial training: the patch discriminator, the loss terms, and GAN runs where both optimizers step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from discotok.discriminators import DISCRIMINATORS, DiscriminatorOutput
from discotok.losses import AdversarialLoss
from discotok.losses.adversarial import adaptive_weight, hinge_d_loss
from discotok.train.module import TokenizerModule, warmup_cosine
from tests.conftest import tiny_tokenizer_config

TINY_D = {"name": "patch", "channels": 8, "num_layers": 2}


class WaveDiscriminator(nn.Module):
    """A two-scale 1-D discriminator over waveforms (B, 1, T), standing in for an audio one."""

    def __init__(self) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            nn.ModuleList([nn.Conv1d(1, 4, 5, 2, 2), nn.Conv1d(4, 1, 3, 1, 1)]) for _ in range(2)
        )

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for i, (conv, head) in enumerate(self.scales):
            h = F.leaky_relu(conv(F.avg_pool1d(x, 2) if i else x), 0.2)
            logits.append(head(h))
            features.append([h])
        return DiscriminatorOutput(logits, features)


if "test_wave" not in DISCRIMINATORS.names():
    DISCRIMINATORS.register("test_wave")(WaveDiscriminator)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_patch_discriminator_contract(norm, photo_batch):
    disc = DISCRIMINATORS.build({"name": "patch", "channels": 16, "num_layers": 3, "norm": norm})
    out = disc(photo_batch[:2])
    assert isinstance(out, DiscriminatorOutput) and len(out.logits) == len(out.features) == 1
    assert out.logits[0].shape == (2, 1, 2, 2)  # 32 px: three stride-2 convs, two stride-1 4x4 convs
    assert len(out.features[0]) == 4 and out.features[0][0].shape == (2, 16, 16, 16)


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    w = torch.ones(3, 3, requires_grad=True)
    assert adaptive_weight((2 * w).sum(), (0.5 * w).sum(), w).item() == pytest.approx(4.0, rel=1e-4)


def test_adversarial_loss_is_modality_generic_with_feature_matching():
    adv = AdversarialLoss({"name": "test_wave"}, weight=0.5, feature_matching_weight=2.0, lecam_weight=0.1)
    x = torch.randn(3, 1, 64)
    x_hat = torch.randn(3, 1, 64, requires_grad=True)
    loss, parts = adv(x, x_hat, nll=x_hat.pow(2).mean(), step=0)
    loss.backward()
    assert x_hat.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adv.discriminator.parameters())
    assert {"d_hinge", "d_lecam", "g_feature_matching", "g_adversarial"} <= set(parts)
    assert (adv.lecam_ema != 0).all()


def test_discriminator_gradient_comes_from_its_own_loss_only():
    """One backward serves both players: the generator term must not push the discriminator."""
    adv = AdversarialLoss({"name": "test_wave"}, weight=1.0)
    x, x_hat = torch.randn(2, 1, 32), torch.randn(2, 1, 32, requires_grad=True)
    total, _ = adv(x, x_hat, nll=x_hat.sum(), step=0)
    total.backward()
    both = [p.grad.clone() for p in adv.discriminator.parameters()]
    adv.zero_grad()
    hinge_d_loss(adv.discriminator(x), adv.discriminator(x_hat.detach())).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(both, adv.discriminator.parameters()))


class ClipSpy(TokenizerModule):
    """Records which optimizers get their gradients clipped."""

    clipped: list[int]

    def clip_gradients(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        self.clipped.append(id(getattr(optimizer, "optimizer", optimizer)))
        super().clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


def gan_module(start_step: int = 1, **adversarial) -> ClipSpy:
    loss = {"adversarial": {"discriminator": TINY_D, "weight": 0.5, "start_step": start_step, **adversarial}}
    module = ClipSpy(tiny_tokenizer_config("vq"), loss=loss, optim={"lr": 1e-3, "warmup_steps": 2, "grad_clip": 1.0})
    module.clipped = []
    return module


def fit(module: TokenizerModule, batch: torch.Tensor, steps: int, tmp_path) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
    )
    trainer.fit(module, DataLoader(batch, batch_size=4))
    return trainer


def test_gan_run_steps_both_optimizers_with_clipping_and_schedules(photo_batch, tmp_path):
    module = gan_module(start_step=1, adaptive_weight=True, lecam_weight=0.01)
    assert not module.automatic_optimization
    d_before = [p.clone() for p in module.adversarial.discriminator.parameters()]
    trainer = fit(module, photo_batch, 2, tmp_path)
    assert trainer.global_step == 2  # training iterations, not optimizer steps
    opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in module.optimizers())
    assert opt_g.state[next(iter(module.tokenizer.parameters()))]["step"] == 2
    assert opt_d.state[next(iter(module.adversarial.discriminator.parameters()))]["step"] == 1  # from start_step 1
    assert any(not torch.equal(a, b) for a, b in zip(d_before, module.adversarial.discriminator.parameters()))
    assert module.clipped.count(id(opt_g)) == 2 and module.clipped.count(id(opt_d)) == 1
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * warmup_cosine(2, 2, 2, 0.1))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(1e-4 * warmup_cosine(1, 2, 1, 0.1))
    logged = trainer.callback_metrics
    assert {"train/d_hinge", "train/g_adversarial", "train/adversarial_weight", "train/d_lecam"} <= set(logged)
    assert logged["train/adversarial_weight"] > 0


def test_discriminator_waits_for_its_start_step(photo_batch, tmp_path):
    module = gan_module(start_step=5)
    d_before = [p.clone() for p in module.adversarial.discriminator.parameters()]
    fit(module, photo_batch, 1, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(d_before, module.adversarial.discriminator.parameters()))
    assert "train/d_hinge" not in module.trainer.callback_metrics


def test_fp16_with_a_gan_is_refused():
    module = gan_module()
    module.trainer = L.Trainer(accelerator="cpu", precision="16-true", logger=False)
    with pytest.raises(ValueError, match="bf16-mixed"):
        module.on_fit_start()
