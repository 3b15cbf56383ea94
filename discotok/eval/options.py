"""The settings of one ``discotok eval`` run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class EvalOptions:
    """Settings of one evaluation (see ``evaluate``)."""

    image_size: int | Sequence[int] | None = None
    max_seconds: float | None = None
    num_images: int | None = None
    batch_size: int = 16
    fid: bool = True
    fid_weights: str | None = None
    lpips_weights: str | None = None
    num_tokens: Sequence[int] | None = None
    depths: Sequence[int] | None = None
    pfid_alpha: float | None = None
    pfid_delta: int | None = None
    pesq_stoi: bool = False
    precision: str = "fp32"
    seed: int = 0
    cache_dir: str | None = None
    device: str = "cpu"
    workers: int = 0
    progress: bool = True
    grid_images: int = 8
    baselines: bool = True
