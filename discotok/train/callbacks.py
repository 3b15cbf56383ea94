"""Training callbacks: reconstruction grids (images) and example wavs (audio)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchvision.utils import make_grid, save_image

from discotok.atomic import atomic_path
from discotok.data.audio import save_audio


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


class AudioExamples(L.Callback):
    """After every validation, write ``folder/NN_input.wav`` and ``folder/NN_reconstruction.wav``
    for the first validation clips (cut to their lengths) and log them as audio."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        examples = getattr(module, "val_examples", None)
        if trainer.sanity_checking or examples is None or not trainer.is_global_zero:
            return
        rate = module.tokenizer.sample_rate
        lengths = module.val_example_lengths
        for i, (x, x_hat) in enumerate(zip(*examples)):
            n = x.shape[-1] if lengths is None else int(lengths[i])
            for kind, wave in (("input", x[:, :n]), ("reconstruction", x_hat[:, :n])):
                save_audio(self.folder / f"{i:02d}_{kind}.wav", wave, rate)
                for logger in trainer.loggers:
                    add_audio = getattr(getattr(logger, "experiment", None), "add_audio", None)
                    if callable(add_audio):
                        add_audio(f"val/{i:02d}_{kind}", wave.mean(0).float(), trainer.global_step, sample_rate=rate)
