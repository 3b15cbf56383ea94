"""Training callbacks: reconstruction grids (images), example wavs (audio) and the codebook-usage picture."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid, save_image

from discotok.atomic import atomic_path
from discotok.data.audio import save_audio
from discotok.metrics import CodebookUsage


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
        log_image(trainer, "val/reconstructions", grid)


def log_image(trainer: L.Trainer, tag: str, image: torch.Tensor) -> None:
    """Log an image (3, H, W) in [0, 1] to every logger that takes images (TensorBoard, W&B)."""
    for logger in trainer.loggers:
        add_image = getattr(getattr(logger, "experiment", None), "add_image", None)
        if callable(add_image):
            add_image(tag, image, trainer.global_step)
        elif hasattr(logger, "log_image"):
            logger.log_image(key=tag, images=[image], step=trainer.global_step)


def codebook_usage_figure(usage: CodebookUsage) -> Figure:
    """Uses per code, codes sorted from most to least used (log-log), one line per level."""
    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for level, counts in enumerate(usage.counts):
        uses = counts.sort(descending=True).values.numpy()
        ax.step(np.arange(1, len(uses) + 1), uses, where="post", label=f"level {level}" if len(usage.counts) > 1 else None)
    summary = usage.compute()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, max(usage.codebook_size, 2))
    ax.set_xlabel(f"code rank (most used first; {usage.codebook_size} codes)")
    ax.set_ylabel("uses in validation")
    ax.set_title(f"{summary['usage']:.1%} of the codebook used, perplexity {summary['perplexity']:.1f}")
    if len(usage.counts) > 1:
        ax.legend()
    return fig


def figure_to_tensor(fig: Figure) -> torch.Tensor:
    """An RGB image tensor (3, H, W) in [0, 1] of a matplotlib figure."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = torch.from_numpy(np.asarray(canvas.buffer_rgba()).copy())
    return rgba[..., :3].permute(2, 0, 1).float() / 255


class CodebookHistogram(L.Callback):
    """After every validation, draw the validation codebook usage to ``path`` and log it as an image."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        usage = getattr(module, "val_usage", None)
        if trainer.sanity_checking or usage is None or not usage.counts or not trainer.is_global_zero:
            return
        fig = codebook_usage_figure(usage)
        with atomic_path(self.path) as tmp:
            fig.savefig(tmp, format="png")
        log_image(trainer, "val/codebook_usage", figure_to_tensor(fig))


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
