"""Helpers of the tests that convert a transformers audio codec (Mimi, X-Codec, EnCodec): a padded batch of clips,
the reference saved as the hub serves it, edited copies of its directory for the refusal tests, and EnCodec's zero
codebooks filled at the latents' scale, run in one thread with denormals flushed."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file


def padded(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (C, L_b) as one zero-padded batch (B, C, max L) and their lengths (B,)."""
    lengths = torch.tensor([c.shape[-1] for c in clips])
    batch = torch.zeros(len(clips), clips[0].shape[0], int(lengths.max()))
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


@torch.no_grad()
def fill_codebooks(books: list[torch.nn.Module], residual: torch.Tensor) -> None:
    """EnCodec's Euclidean codebooks (``embed``, zero when built; ``encode`` / ``decode``, in the encodec package and
    in transformers) filled level by level with random codes at the scale of ``residual`` (n, dim), the latents they
    quantize (each dimension's mean and spread), the residual each level leaves feeding the next."""
    for book in books:
        book.embed.copy_(residual.mean(0) + residual.std(0) * torch.randn_like(book.embed))
        residual = residual - book.decode(book.encode(residual))


@contextmanager
def flushed_one_thread() -> Iterator[None]:
    """One thread with denormal floats flushed to zero, on both sides of a comparison alike (the flag is the calling
    thread's): random networks meet denormals, which CPUs compute about 100 times slower (measured: 12.6 s -> 0.07 s
    for one EnCodec 48 kHz reference; a segments test 149 s in two threads on a busy machine, 0.5 s so)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
