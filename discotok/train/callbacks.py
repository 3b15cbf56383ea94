"""Training callbacks: the modality's validation examples and the codebook-usage picture."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from discotok.atomic import atomic_path
from discotok.media import log_image
from discotok.metrics import CodebookUsage


class ValidationExamples(L.Callback):
    """After every validation, the modality writes the first validation examples under ``out_dir`` (a
    reconstruction grid, example wavs) and logs them."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        examples = module.val_examples
        if trainer.sanity_checking or examples is None or not trainer.is_global_zero:
            return
        module.tokenizer.modality.write_examples(self.out_dir, *examples, module.val_example_lengths,
                                                 trainer.loggers, trainer.global_step)


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
        usage = module.val_usage
        if trainer.sanity_checking or usage is None or not usage.counts or not trainer.is_global_zero:
            return
        fig = codebook_usage_figure(usage)
        with atomic_path(self.path) as tmp:
            fig.savefig(tmp, format="png")
        log_image(trainer.loggers, "val/codebook_usage", figure_to_tensor(fig), trainer.global_step)
