"""One LightningModule trains any tokenizer."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor, nn

from discotok.ladder import powers_of_two
from discotok.losses import LOSSES, AdversarialLoss
from discotok.metrics import CodebookUsage, ResidualShares
from discotok.nn.distributed import is_distributed
from discotok.tokenizers import Tokenizer, TokenizerOutput
from discotok.train.ema import TokenizerEMA
from discotok.train.perturbation import LatentPerturbation

LOSS_KEYS = ("reconstruction", "perceptual", "adversarial", "alignment", "quantizer_weight")
OPTIM_DEFAULTS = {
    "lr": 2e-4, "betas": (0.5, 0.9), "weight_decay": 1e-4, "warmup_steps": 100, "min_lr_ratio": 0.1, "grad_clip": None,
}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def validation_depths(quantizer: nn.Module) -> list[int]:
    """The depths a residual quantizer is validated at: 1, 2, 4, ..., depth (``discotok eval``'s default);
    none for a single-level quantizer."""
    return powers_of_two(quantizer.depth) if quantizer.depth else []


def adversarial_enabled(spec: dict | None) -> bool:
    """Whether a loss config's ``adversarial`` block is on (not null, a weight above 0)."""
    return bool(spec) and max(float(spec.get("weight", 0.1)), float(spec.get("feature_matching_weight", 0.0))) > 0


def weighted_spec(spec: dict | None) -> dict | None:
    """A loss block with a ``weight`` as a copy, or None when it is null or its weight is 0."""
    return dict(spec) if spec and float(spec.get("weight", 0.0)) > 0 else None


def perceptual_specs(spec: dict | list | None) -> list[dict]:
    """The ``perceptual`` loss block as a list of ``{"name", "weight", ...}`` (null or weight 0: none)."""
    specs = [] if spec is None else [spec] if isinstance(spec, dict) else list(spec)
    return [dict(s) for s in specs if float(s.get("weight", 1.0)) > 0]


class TokenizerModule(L.LightningModule):
    """Reconstruction, perceptual, adversarial and quantizer losses for any tokenizer.

    ``tokenizer`` is a tokenizer config (registered names, plain values). ``loss`` holds
    (configs/loss/): ``reconstruction`` — a ``LOSSES`` spec, e.g. ``{"name": "pixel"}``;
    ``perceptual`` — null, one ``LOSSES`` spec with a ``weight`` (``lpips``,
    ``timm_perceptual``; weight 0 = off) or a list of them; ``adversarial`` — null or the
    keyword arguments of ``AdversarialLoss`` (discriminator spec, weights, start step, its
    optimizer), off while its weights are 0; ``alignment`` — null or a ``repa`` spec with a
    ``weight`` (representation alignment to a frozen timm teacher; weight 0 = off);
    ``quantizer_weight``. A generative decoder (``flow``) brings its own loss, which replaces
    ``reconstruction``; perceptual and adversarial terms, when on, see its one-step estimate.
    ``optim`` holds ``lr``, ``betas``, ``weight_decay``,
    ``warmup_steps``, ``min_lr_ratio`` and ``grad_clip`` (max gradient norm, null = off); parameters
    that require no gradient (a component's frozen parts, e.g. FlexTok's VAE) are left out of the optimizer.
    ``ema`` holds ``decay`` (0 or null: no EMA) and ``start_step``: with it, validation runs
    on the EMA weights and ``export_tokenizer`` returns them. ``perturbation`` holds the
    keyword arguments of ``LatentPerturbation`` (RobusTok; off while ``alpha`` is 0).
    ``init_from``: a tokenizer directory whose weights the tokenizer starts from (strictly: the
    config must be that directory's architecture); everything else (discriminators, projectors,
    EMA) starts fresh, and ``initialisation()`` says what came from where.

    Without an adversarial block this is plain automatic optimization. With one it is
    Lightning's manual optimization with two AdamW optimizers (tokenizer, discriminator),
    each with the warm-up + cosine schedule and gradient clipping; one backward pass per
    step serves both, and only the tokenizer's step advances ``trainer.global_step``, so
    ``max_steps`` counts training iterations.
    """

    def __init__(
        self,
        tokenizer: dict,
        loss: dict | None = None,
        optim: dict | None = None,
        ema: dict | None = None,
        perturbation: dict | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = Tokenizer.from_config(tokenizer)
        if self.tokenizer.decoder.conditioned:
            raise ValueError(
                f"decoder {tokenizer['decoder']['name']!r} needs {self.tokenizer.decoder.condition_description} "
                "for every decode, which training and its validation do not give: a conditioned decoder "
                "(TA-TiTok's) is not trained here"
            )
        if init_from:
            self.tokenizer.load_state_dict(Tokenizer.from_pretrained(init_from).state_dict(), strict=True)
        loss = dict(loss or {})
        unknown = sorted(set(loss) - set(LOSS_KEYS))
        if unknown:
            raise ValueError(f"unknown loss setting(s) {unknown}; expected {', '.join(LOSS_KEYS)}")
        self.quantizer_weight = float(loss.get("quantizer_weight", 1.0))
        self.reconstruction = LOSSES.build(loss.get("reconstruction") or {"name": "pixel"})
        specs = perceptual_specs(loss.get("perceptual"))
        self.perceptual_weights = [float(s.pop("weight", 1.0)) for s in specs]
        self.perceptual = nn.ModuleList(LOSSES.build(s) for s in specs)
        adversarial = loss.get("adversarial")
        self.adversarial = AdversarialLoss(**adversarial) if adversarial_enabled(adversarial) else None
        if self.adversarial is not None and self.adversarial.adaptive and self.tokenizer.decoder.last_layer is None:
            raise ValueError(
                f"adversarial.adaptive_weight needs a decoder with a last_layer; "
                f"decoder {tokenizer['decoder']['name']!r} has none (use a fixed weight)"
            )
        self.automatic_optimization = self.adversarial is None
        alignment = weighted_spec(loss.get("alignment"))
        self.alignment_weight = float(alignment.pop("weight")) if alignment else 0.0
        self.alignment = LOSSES.build(alignment, tokenizer=self.tokenizer) if alignment else None
        self.perturbation = LatentPerturbation(**(perturbation or {}))
        if self.perturbation.enabled and self.tokenizer.quantizer.continuous:
            raise ValueError(
                f"latent perturbation replaces ids by near codes; quantizer {tokenizer['quantizer']['name']!r} has no ids"
            )
        self.optim = {**OPTIM_DEFAULTS, **(optim or {})}
        ema = dict(ema or {})
        self.ema = TokenizerEMA(self.tokenizer, **ema) if ema.get("decay") else None
        self.ema_step = -1
        self.validated_at = -1  # the step of the last validation
        self.val_usage: CodebookUsage | None = None
        self.val_examples: tuple[Tensor, Tensor] | None = None
        self.val_example_lengths: Tensor | None = None
        self.val_scores: dict[str, list[Tensor]] = {}
        self.val_shares = ResidualShares()

    def forward(self, x: Tensor) -> Any:
        return self.tokenizer(x)

    def initialisation(self) -> str:
        """Where the run's weights start: the tokenizer's source and the trainable parts that start fresh."""
        source = self.hparams.init_from
        size = sum(p.numel() for p in self.tokenizer.parameters()) / 1e6
        fresh = [f"{name} ({n / 1e6:.2f} M)" for name, child in self.named_children()
                 if name not in ("tokenizer", "ema") and (n := sum(p.numel() for p in child.parameters() if p.requires_grad))]
        start = (f"the tokenizer ({size:.2f} M parameters, {len(self.tokenizer.state_dict())} tensors) from {source}"
                 if source else f"the tokenizer ({size:.2f} M parameters) at random")
        return f"starting {start}; fresh: {', '.join(fresh) or 'nothing else'}"

    def export_tokenizer(self) -> Tokenizer:
        """The tokenizer to validate and to save: the EMA weights when EMA is on, else the live ones."""
        return self.ema.tokenizer if self.ema is not None else self.tokenizer

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.global_step != self.ema_step:  # once per optimizer step
            self.ema.update(self.tokenizer, self.global_step)
            self.ema_step = self.global_step

    def reconstruction_loss(self, out: TokenizerOutput, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Reconstruction (a generative decoder's own loss) plus weighted perceptual losses
        (the generator's "nll") and their parts."""
        if out.decoder_loss is not None:
            loss, parts = out.decoder_loss, dict(out.decoder_parts)
        else:
            loss, parts = self.reconstruction(out.x_hat, x)
        for weight, perceptual in zip(self.perceptual_weights, self.perceptual):
            value, more = perceptual(out.x_hat, x)
            loss = loss + weight * value
            parts = {**parts, **more}
        return loss, parts

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        perturb = self.perturbation.for_step(self.global_step) if self.perturbation.enabled else None
        with self.alignment.capture(self.tokenizer) if self.alignment is not None else nullcontext() as features:
            out = self.tokenizer(batch, perturb=perturb)
        nll, parts = self.reconstruction_loss(out, batch)
        loss = nll + self.quantizer_weight * out.quantized.loss
        if self.alignment is not None:
            aligned, more = self.alignment(features, batch)
            loss = loss + self.alignment_weight * aligned
            parts = {**parts, "alignment": aligned.detach(), **more}
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in parts.items()})
        self.log("train/quantizer_loss", out.quantized.loss.detach())
        self.log_dict({f"train/{k}": v.float() for k, v in out.quantized.stats.items()}, prog_bar=False)
        if self.adversarial is not None:
            self.adversarial_step(batch, out.x_hat, nll, loss)
        return loss

    def adversarial_step(self, x: Tensor, x_hat: Tensor, nll: Tensor, loss: Tensor) -> None:
        """One manual step of both players: a single backward, then each optimizer with its clipping and schedule."""
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        step = self.global_step
        last_layer = self.tokenizer.decoder.last_layer
        adv, parts = self.adversarial(x, x_hat, nll, step, last_layer)
        self.log_dict({f"train/{k}": v for k, v in parts.items()})
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss + adv)
        self.clip(opt_g)
        opt_g.step()
        sched_g.step()
        if self.adversarial.active(step):
            self.clip(opt_d)
            # the raw optimizer: Lightning counts every LightningOptimizer step in global_step
            # (two per GAN iteration, Lightning issue #17958); only the tokenizer's step counts here
            opt_d.optimizer.step()
            sched_d.step()

    def clip(self, optimizer: Any) -> None:
        if self.optim["grad_clip"]:
            self.clip_gradients(optimizer, gradient_clip_val=float(self.optim["grad_clip"]), gradient_clip_algorithm="norm")

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None) -> None:
        """Automatic optimization: clip to the trainer's setting, else to ``optim.grad_clip``."""
        if gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)
        else:
            self.clip(optimizer)

    def on_fit_start(self) -> None:
        precision = str(self.trainer.precision)
        if self.adversarial is not None and precision.startswith("16"):
            raise ValueError(
                f"adversarial training runs in 32-bit or bf16-mixed precision, not {precision!r} "
                "(two optimizers cannot share Lightning's fp16 gradient scaler); use trainer.precision=bf16-mixed"
            )

    def on_validation_epoch_start(self) -> None:
        continuous = self.tokenizer.quantizer.continuous  # identity: no ids, no codebook
        self.val_usage = None if continuous else CodebookUsage(self.tokenizer.codebook_size)
        self.val_examples = None
        self.val_example_lengths = None
        self.val_scores = {}
        self.val_shares = ResidualShares()

    def validation_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Images (B, 3, H, W): PSNR, SSIM and the thumbnails' PSNR. Audio (B, C, T) or ``(waves, lengths)``: SI-SNR,
        mel and STFT distances.

        A residual quantizer is also scored at each depth of ``validation_depths`` (logged as
        ``val/depth{d}/<score>``), with the share of the residual each level removes (``val/level{j}/residual_share``).
        """
        x, lengths = batch if isinstance(batch, (tuple, list)) else (batch, None)
        tok = self.export_tokenizer()
        out = tok(x) if lengths is None else tok(x, lengths=lengths)
        rec, parts = self.reconstruction_loss(out, x)
        scores = tok.modality.scores(out.x_hat, x, lengths) | tok.modality.baseline_scores(x)
        frames = tok.modality.valid_frames(lengths)
        if self.val_usage is not None:
            used = out.ids if frames is None else torch.cat([i[:n] for i, n in zip(out.ids, frames.tolist())])[None]
            self.val_usage.update(used)
        depths = validation_depths(tok.quantizer)
        if depths:
            self.val_shares.update(tok.quantizer.residual_energies(out.z, out.ids), frames)
            for depth in depths:
                shallow = out if depth == tok.quantizer.depth else tok(x, lengths=lengths, depth=depth)
                for name, value in tok.modality.scores(shallow.x_hat, x, lengths).items():
                    self.val_scores.setdefault(f"depth{depth}/{name}", []).append(value)
        for name, value in scores.items():
            self.val_scores.setdefault(name, []).append(value)
        if self.val_examples is None:
            k = tok.modality.num_examples
            self.val_examples = (x[:k].cpu(), out.x_hat[:k].clamp(-1, 1).cpu())
            self.val_example_lengths = None if lengths is None else lengths[:k].cpu()
        self.log("val/loss", rec, prog_bar=False, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in parts.items() if k not in ("l1", "l2")}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if not self.val_scores:
            return
        if not self.trainer.sanity_checking:
            self.validated_at = self.global_step
        for name, values in self.val_scores.items():
            self.log(f"val/{name}", torch.cat(values).mean(), prog_bar=name == self.tokenizer.modality.headline, sync_dist=True)
        if self.val_shares.total is not None:
            if is_distributed():
                dist.all_reduce(self.val_shares.total)
            for j, share in enumerate(self.val_shares.compute()["residual_share"]):
                self.log(f"val/level{j + 1}/residual_share", float(share), rank_zero_only=True)
        if self.val_usage is None:
            return
        if is_distributed():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self.val_usage)
            for other in gathered[1:] if dist.get_rank() == 0 else []:
                self.val_usage.merge(other)
        usage = self.val_usage.compute()
        self.log("val/usage", usage["usage"], prog_bar=True, rank_zero_only=True)
        self.log("val/perplexity", usage["perplexity"], rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the random state, so a resumed run draws what the uninterrupted one would."""
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])

    def adamw(self, params: list[tuple[str, nn.Parameter]], lr: float, betas: Any, weight_decay: float) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices and kernels only (not on biases, norms or codebooks)."""
        decay = [p for n, p in params if p.ndim >= 2 and "codebook" not in n]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and "codebook" not in n)]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas))

    def schedule(self, optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
        o = self.optim
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, int(o["warmup_steps"]), total, float(o["min_lr_ratio"]))
        )

    def configure_optimizers(self) -> Any:
        o = self.optim
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 10**9
        # frozen parts (a pretrained VAE held fixed) take no updates and no weight decay: not in the optimizer
        params = [(n, p) for n, p in self.tokenizer.named_parameters() if p.requires_grad]
        if self.alignment is not None:  # the projector trains with the tokenizer (the teacher is frozen)
            params += [(f"alignment.{n}", p) for n, p in self.alignment.named_parameters() if p.requires_grad]
        opt_g = self.adamw(params, o["lr"], o["betas"], o["weight_decay"])
        sched_g = self.schedule(opt_g, total)
        if self.adversarial is None:
            return {"optimizer": opt_g, "lr_scheduler": {"scheduler": sched_g, "interval": "step"}}
        d = self.adversarial.optim
        opt_d = self.adamw(list(self.adversarial.discriminator.named_parameters()), d["lr"], d["betas"], d["weight_decay"])
        # the discriminator's schedule counts its own steps, from adversarial.start_step on
        sched_d = self.schedule(opt_d, max(1, total - self.adversarial.start_step))
        return [opt_g, opt_d], [sched_g, sched_d]
