"""Adversarial training over ``DiscriminatorOutput``: the loss terms (hinge, non-saturating,
feature matching, LeCAM, VQGAN's adaptive weight) and ``AdversarialLoss``, which holds the
discriminator and combines them for any modality.

Each term sums over sub-discriminators and averages within each, so a multi-period or
multi-scale discriminator and a single patch discriminator are weighted alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discotok.discriminators import DISCRIMINATORS, DiscriminatorOutput
from discotok.nn.distributed import all_reduce_mean_


def hinge_d_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - D(x))) + mean(relu(1 + D(x̂)))`` per sub-discriminator."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real.logits, fake.logits, strict=True))


def hinge_g_loss(fake: DiscriminatorOutput) -> Tensor:
    """Generator side of the hinge loss: ``-mean(D(x̂))`` per sub-discriminator."""
    return sum(-f.mean() for f in fake.logits)


def feature_matching(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """Mean L1 between the discriminator's features of real (detached) and reconstructed inputs."""
    pairs = [(r, f) for rs, fs in zip(real.features, fake.features, strict=True) for r, f in zip(rs, fs, strict=True)]
    if not pairs:
        return torch.zeros(())
    return sum(F.l1_loss(f, r.detach()) for r, f in pairs) / len(pairs)


def lecam(real: DiscriminatorOutput, fake: DiscriminatorOutput, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCAM regulariser (Tseng et al. 2021): ``mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(x̂))^2)``.

    ``ema_real`` / ``ema_fake`` are running means of the discriminator's outputs on real and
    reconstructed inputs, kept by the caller.
    """
    return sum(
        F.relu(r - ema_fake).pow(2).mean() + F.relu(ema_real - f).pow(2).mean()
        for r, f in zip(real.logits, fake.logits, strict=True)
    )


def non_saturating_g_loss(fake: DiscriminatorOutput) -> Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(x̂)))`` per sub-discriminator (Open-MAGVIT2, StyleGAN)."""
    return sum(F.softplus(-f).mean() for f in fake.logits)


GENERATOR_LOSSES = {"hinge": hinge_g_loss, "non_saturating": non_saturating_g_loss}


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, limit: float = 1e4) -> Tensor:
    """VQGAN's balance ``||∇ nll|| / (||∇ g_loss|| + 1e-4)`` at the decoder's last layer, clamped, detached."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, limit).detach()


class AdversarialLoss(nn.Module):
    """The GAN part of training, for any modality: a discriminator built by registered name
    (``DISCRIMINATORS``) and the losses of both players.

    Args:
        discriminator: the discriminator spec, ``{"name": "patch", ...}``.
        weight: weight of the generator's adversarial loss.
        adaptive_weight: multiply ``weight`` by VQGAN's adaptive balance (needs the decoder's
            ``last_layer``); False: a fixed weight.
        generator_loss: ``hinge`` (``-D(x̂)``) or ``non_saturating``; the discriminator always
            trains with the hinge loss.
        feature_matching_weight: weight of the L1 feature-matching loss (audio GANs); 0 = off.
        lecam_weight: weight of the LeCAM regulariser on the discriminator; 0 = off.
        lecam_decay: decay of the running means of D's outputs that LeCAM uses.
        start_step: the discriminator trains, and the generator sees its loss, from this step on.
        optim: the discriminator's AdamW settings (``lr``, ``betas``, ``weight_decay``), used by
            the training module.

    ``forward`` returns one scalar whose gradient is right for both players, so one backward
    pass serves both optimizers: the discriminator's loss sees ``x̂`` detached, and the
    generator's loss runs the discriminator with detached parameters. Before ``start_step``
    every discriminator parameter joins with weight zero (DDP then needs no
    ``find_unused_parameters``).
    """

    def __init__(
        self,
        discriminator: dict,
        weight: float = 0.1,
        adaptive_weight: bool = False,
        generator_loss: str = "hinge",
        feature_matching_weight: float = 0.0,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        start_step: int = 0,
        optim: dict | None = None,
    ) -> None:
        super().__init__()
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {sorted(GENERATOR_LOSSES)}, got {generator_loss!r}")
        if min(weight, feature_matching_weight, lecam_weight, start_step) < 0:
            raise ValueError("adversarial weights and start_step must be non-negative")
        self.discriminator = DISCRIMINATORS.build(discriminator)
        self.weight = float(weight)
        self.adaptive = bool(adaptive_weight)
        self.generator_loss = GENERATOR_LOSSES[generator_loss]
        self.feature_matching_weight = float(feature_matching_weight)
        self.lecam_weight = float(lecam_weight)
        self.lecam_decay = float(lecam_decay)
        self.start_step = int(start_step)
        self.optim = {"lr": 1e-4, "betas": (0.5, 0.9), "weight_decay": 0.0, **(optim or {})}
        # running means of D(x) and D(x̂) for LeCAM, the same on every rank
        self.register_buffer("lecam_ema", torch.zeros(2))

    def active(self, step: int) -> bool:
        """Whether the discriminator trains at ``step`` (0-based count of generator steps done)."""
        return step >= self.start_step

    def forward(
        self, x: Tensor, x_hat: Tensor, nll: Tensor, step: int, last_layer: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Generator + discriminator loss for real ``x`` and reconstructed ``x_hat``.

        ``nll`` is the generator's reconstruction (+ perceptual) loss, used by the adaptive weight.
        """
        disc = self.discriminator
        if not self.active(step):
            return sum(p.sum() for p in disc.parameters()) * 0.0, {}
        real = disc(x)
        fake = disc(x_hat.detach())
        d_loss = hinge_d_loss(real, fake)
        parts = {"d_hinge": d_loss.detach()}
        if self.lecam_weight > 0:
            self._update_lecam_ema(real, fake)
            reg = lecam(real, fake, self.lecam_ema[0], self.lecam_ema[1])
            d_loss = d_loss + self.lecam_weight * reg
            parts["d_lecam"] = reg.detach()
        frozen = {name: p.detach() for name, p in disc.named_parameters()}
        fake_g = torch.func.functional_call(disc, frozen, (x_hat,))
        g_adv = self.generator_loss(fake_g)
        weight = torch.tensor(self.weight, device=x.device)
        if self.adaptive:
            if last_layer is None:
                raise ValueError("the adaptive adversarial weight needs the decoder's last_layer")
            weight = weight * adaptive_weight(nll, g_adv, last_layer)
        g_loss = weight * g_adv
        if self.feature_matching_weight > 0:
            fm = feature_matching(real, fake_g)
            g_loss = g_loss + self.feature_matching_weight * fm
            parts["g_feature_matching"] = fm.detach()
        parts.update(
            g_adversarial=g_adv.detach(),
            adversarial_weight=weight.detach(),
            logits_real=mean_logit(real),
            logits_fake=mean_logit(fake),
        )
        return g_loss + d_loss, parts

    @torch.no_grad()
    def _update_lecam_ema(self, real: DiscriminatorOutput, fake: DiscriminatorOutput) -> None:
        means = torch.stack([mean_logit(real), mean_logit(fake)]).float()
        all_reduce_mean_(means)
        self.lecam_ema.lerp_(means, 1.0 - self.lecam_decay)


def mean_logit(out: DiscriminatorOutput) -> Tensor:
    """Mean of the discriminator's logits over sub-discriminators, detached."""
    return torch.stack([logits.detach().float().mean() for logits in out.logits]).mean()
