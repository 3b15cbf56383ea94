"""Image baselines of ``discotok eval``: thumbnails, JPEG and WebP at the tokenizers' bits per image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from discotok.eval.baselines.contract import Comparison, losses, run_codecs
from discotok.eval.baselines.jpeg import jpeg
from discotok.eval.baselines.thumbnail import Thumbnail
from discotok.eval.baselines.webp import webp
from discotok.eval.metrics import PSNR_CEILING_DB, image_metrics

if TYPE_CHECKING:
    from discotok.eval.protocol import EvalSet
    from discotok.eval.options import EvalOptions

COMPARISON = Comparison("bits_per_image", "bits/image", "psnr", "PSNR", "{:.2f} dB", higher_is_better=True)


class ImageItems:
    """Images in [-1, 1] (B, 3, H, W) as uint8 (H, W, 3) arrays, and back; rates per image and pixel."""

    rate_key = "bits_per_image"
    unit = "bits/image"

    def __init__(self, size: tuple[int, int]) -> None:
        self.pixels = size[0] * size[1]

    def split(self, x: Tensor, extra: dict) -> list[np.ndarray]:
        codes = x.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        return list(rearrange(codes, "b c h w -> b h w c").numpy())

    def join(self, items: list[np.ndarray], x: Tensor) -> Tensor:
        codes = torch.from_numpy(np.stack(items))
        return rearrange(codes, "b h w c -> b c h w").float().div(127.5).sub(1)

    def size(self, item: np.ndarray) -> float:
        return 1.0

    def rate(self, bits: float, header_bits: float, size: float) -> dict[str, float]:
        per_image, with_header = bits / size, (bits + header_bits) / size
        return {"bits_per_image": per_image, "bits_per_image_with_header": with_header,
                "bits_per_pixel": per_image / self.pixels, "bits_per_pixel_with_header": with_header / self.pixels}


def image_baselines(data: EvalSet, results: list[dict], opts: EvalOptions, nets: dict) -> dict[str, Any]:
    """Thumbnails, JPEG and WebP at every tokenizer point's bits per image, scored with eval's image
    metrics (PSNR, SSIM, LPIPS with its weights; rFID is left out: one Inception pass per point)."""
    size = data.reader.size
    codecs = [Thumbnail(size), jpeg(), webp()]
    targets = sorted({r["bits_per_image"] for r in results})
    section = run_codecs(data, codecs, targets, ImageItems(size), lambda: image_metrics(nets.get("lpips")),
                         opts.progress)
    section["notes"] += [f"{r['label']}: {r['psnr_at_ceiling']} image{'s' * (r['psnr_at_ceiling'] != 1)} reproduced to within 8-bit rounding "
                         f"(PSNR counted at the {PSNR_CEILING_DB:.2f} dB ceiling; flat images, for instance)"
                         for r in section["results"] if r.get("psnr_at_ceiling")]
    protocol = {codec.name: codec.describe() for codec in codecs}
    protocol["metrics"] = "PSNR, SSIM and LPIPS (with --lpips-weights) as for the tokenizers; no rFID"
    protocol["comparison"] = ("a tokenizer point loses when a codec row spends no more payload bits per image "
                              "(without the header) and has a higher PSNR")
    return {"protocol": protocol, **section, "loses_to": losses(results, section["results"], COMPARISON)}
