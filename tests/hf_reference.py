"""Helpers of the tests that convert a transformers audio codec (Mimi, X-Codec): a padded batch of clips, the
reference saved as the hub serves it, and edited copies of its directory for the refusal tests."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file


def padded(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (1, L_b) as one zero-padded batch (B, 1, max L) and their lengths (B,)."""
    lengths = torch.tensor([c.shape[-1] for c in clips])
    batch = torch.zeros(len(clips), 1, int(lengths.max()))
    for b, clip in enumerate(clips):
        batch[b, :, : clip.shape[-1]] = clip
    return batch, lengths


def save(model: torch.nn.Module, path: Path) -> Path:
    """``model.save_pretrained(path)`` without its warnings; ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(path)
    return path


def written(folder: Path, tensors: dict[str, torch.Tensor], config: dict, **changes: object) -> Path:
    """A model directory at ``folder`` holding ``tensors`` and ``config`` with ``changes``: a damaged copy."""
    folder.mkdir()
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder
