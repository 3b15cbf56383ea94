"""Training callbacks: reconstruction grids and the exported tokenizer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchvision.utils import make_grid, save_image

from discotok.atomic import atomic_path


def save_reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, path: str | Path) -> Path:
    """Save a PNG with inputs in the top row and their reconstructions below (images in [-1, 1])."""
    grid = make_grid(torch.cat([x, x_hat]).float().add(1).div(2).clamp(0, 1), nrow=len(x), padding=2)
    with atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")
    return Path(path)


class ReconstructionGrid(L.Callback):
    """After every validation, write ``path`` (inputs above reconstructions) and log it as an image."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        examples = getattr(module, "val_examples", None)
        if trainer.sanity_checking or examples is None or not trainer.is_global_zero:
            return
        save_reconstruction_grid(*examples, self.path)
        grid = make_grid(torch.cat(examples).add(1).div(2).clamp(0, 1), nrow=len(examples[0]))
        for logger in trainer.loggers:
            add_image = getattr(getattr(logger, "experiment", None), "add_image", None)
            if callable(add_image):
                add_image("val/reconstructions", grid, trainer.global_step)
