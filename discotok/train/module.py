"""One LightningModule trains any tokenizer."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from discotok.losses import LOSSES
from discotok.metrics import CodebookUsage, mel_distance, psnr, si_snr, stft_distance
from discotok.tokenizers import Tokenizer

EXAMPLES = {"image": 8, "audio": 4}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TokenizerModule(L.LightningModule):
    """Reconstruction + quantizer loss; perceptual and adversarial terms slot in beside them.

    ``tokenizer`` is a tokenizer config (registered names, plain values); ``loss`` holds
    ``reconstruction`` (a ``LOSSES`` spec, e.g. ``{"name": "pixel", "l1_weight": 1.0}``) and
    ``quantizer_weight`` (configs/loss/); ``optim`` holds ``lr``, ``betas``, ``weight_decay``,
    ``warmup_steps``, ``min_lr_ratio``.
    """

    def __init__(self, tokenizer: dict, loss: dict | None = None, optim: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = Tokenizer.from_config(tokenizer)
        loss = dict(loss or {})
        self.quantizer_weight = float(loss.pop("quantizer_weight", 1.0))
        self.reconstruction = LOSSES.build(loss.pop("reconstruction", {"name": "pixel"}))
        if loss:
            raise ValueError(f"unknown loss setting(s) {sorted(loss)}; expected reconstruction, quantizer_weight")
        self.optim = {"lr": 2e-4, "betas": (0.5, 0.9), "weight_decay": 1e-4, "warmup_steps": 100, "min_lr_ratio": 0.1}
        self.optim.update(optim or {})
        self.val_usage: CodebookUsage | None = None
        self.val_examples: tuple[Tensor, Tensor] | None = None
        self.val_example_lengths: Tensor | None = None
        self.val_scores: dict[str, list[Tensor]] = {}

    def forward(self, x: Tensor) -> Any:
        return self.tokenizer(x)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        out = self.tokenizer(batch)
        rec, parts = self.reconstruction(out.x_hat, batch)
        loss = rec + self.quantizer_weight * out.quantized.loss
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in parts.items()})
        self.log("train/quantizer_loss", out.quantized.loss.detach())
        self.log_dict({f"train/{k}": v.float() for k, v in out.quantized.stats.items()}, prog_bar=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_usage = CodebookUsage(self.tokenizer.codebook_size)
        self.val_examples = None
        self.val_scores = {}

    def validation_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Images (B, 3, H, W): PSNR. Audio (B, C, T) or ``(waves, lengths)``: SI-SNR, mel and STFT distances."""
        x, lengths = batch if isinstance(batch, (tuple, list)) else (batch, None)
        out = self.tokenizer(x) if lengths is None else self.tokenizer(x, lengths=lengths)
        rec, _ = self.reconstruction(out.x_hat, x)
        if self.tokenizer.modality == "audio":
            rate = self.tokenizer.sample_rate
            scores = {"si_snr": si_snr(out.x_hat, x, lengths), "mel_distance": mel_distance(out.x_hat, x, rate, lengths),
                      "stft_distance": stft_distance(out.x_hat, x, lengths)}
            frames = None if lengths is None else self.tokenizer.num_frames(lengths).tolist()
            self.val_usage.update(out.ids if frames is None else torch.cat([i[:n] for i, n in zip(out.ids, frames)])[None])
        else:
            scores = {"psnr": psnr(out.x_hat, x)}
            self.val_usage.update(out.ids)
        for name, value in scores.items():
            self.val_scores.setdefault(name, []).append(value)
        if self.val_examples is None:
            k = EXAMPLES[self.tokenizer.modality]
            self.val_examples = (x[:k].cpu(), out.x_hat[:k].clamp(-1, 1).cpu())
            self.val_example_lengths = None if lengths is None else lengths[:k].cpu()
        self.log("val/loss", rec, prog_bar=False)

    def on_validation_epoch_end(self) -> None:
        if not self.val_scores:
            return
        for name, values in self.val_scores.items():
            self.log(f"val/{name}", torch.cat(values).mean(), prog_bar=name in ("psnr", "si_snr"))
        usage = self.val_usage.compute()
        self.log("val/usage", usage["usage"], prog_bar=True)
        self.log("val/perplexity", usage["perplexity"])

    def configure_optimizers(self) -> dict:
        decay, no_decay = [], []
        for name, p in self.tokenizer.named_parameters():
            (decay if p.ndim >= 2 and "codebook" not in name else no_decay).append(p)
        o = self.optim
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o["lr"], betas=tuple(o["betas"]),
        )
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 10**9
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, int(o["warmup_steps"]), total, float(o["min_lr_ratio"]))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
