"""``image``: images (B, 3, H, W) in [-1, 1]; tokens on a grid or a 1-D sequence of any prefix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from discotok.layout import Layout
from discotok.figures import rounded
from discotok.markdown import markdown_table
from discotok.modalities.base import Batch, Modality, RateAxes
from discotok.registry import MODALITIES, ConfigError

THUMBNAILS = (2, 4)  # validation also scores 2x2 and 4x4 thumbnails (96, 384 bits), the classical baselines


def check_prefix_length(k: int, n: int, what: str) -> None:
    """``ValueError`` unless a prefix length ``k`` lies in 1..n."""
    if not 1 <= int(k) <= n:
        raise ValueError(f"{what} must lie in 1..{n} (a prefix of the N = {n} tokens), got {k}")


@MODALITIES.register("image")
class ImageModality(Modality):
    """Images at the config's ``image_size`` (H, W); any size the encoder divides also encodes. A config's optional
    ``preprocessing`` (``discotok.data.images.ImagePreprocessing``: a publisher's resize filter and alpha blending)
    is what the readers of ``encode`` / ``eval`` apply to image files."""

    name = "image"
    config_keys = ("image_size", "preprocessing")
    item_noun, items_noun = "image", "images"
    pixels = True
    num_examples = 8
    quality_key, headline = "val_psnr_db", "psnr"
    rate_axes = RateAxes("bits_per_pixel", "bits per pixel", (("psnr", "PSNR (dB)"), ("lpips", "LPIPS")))

    folder_data = "image_folder"

    @classmethod
    def file_extensions(cls) -> tuple[str, ...]:
        from discotok.data.images import IMAGE_EXTENSIONS

        return IMAGE_EXTENSIONS

    @classmethod
    def validate_config(cls, config: dict) -> None:
        size = config.get("image_size")
        if size is not None and (
            not isinstance(size, list) or len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)
        ):
            raise ConfigError(f"config: 'image_size' must be [height, width], got {size!r}")
        from discotok.data.images import ImagePreprocessing

        try:
            ImagePreprocessing.from_config(config.get("preprocessing"))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config: 'preprocessing': {err}") from None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The (H, W) the tokenizer was configured for (None when the config names none)."""
        size = self.config.get("image_size")
        return (int(size[0]), int(size[1])) if size else None

    @property
    def num_tokens(self) -> int:
        """Tokens per image at the configured image size."""
        return self.default_layout().num_tokens

    def prepare(self, x: Tensor, lengths: Tensor | None = None) -> Batch:
        if lengths is not None:
            raise ValueError("lengths belongs to audio tokenizers; images of a batch share one size")
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape (B, C, H, W), got {shape}")
        return Batch(x, None, None, tuple(x.shape[-2:]))

    def prepare_ids(
        self, ids: Tensor, layout: Layout | None, size: Sequence[int] | None, lengths: Tensor | None
    ) -> tuple[Layout, Batch | None]:
        if lengths is not None:
            raise ValueError("lengths belongs to audio tokenizers")
        layout = layout or self.default_layout(ids.shape[1])
        if layout.kind == "sequence":
            check_prefix_length(ids.shape[1], layout.num_tokens, "the token count of ids")
        elif layout.num_tokens != ids.shape[1]:
            raise ValueError(f"ids have {ids.shape[1]} tokens but the layout {layout} holds {layout.num_tokens}")
        return layout, None if size is None else Batch(None, None, None, tuple(int(s) for s in size))

    def default_layout(self, num_tokens: int | None = None) -> Layout:
        """The layout of ids without one; a sequence layout ``Layout("sequence", (N,))`` serves any prefix 1..N."""
        n = self.encoder.sequence_length
        layout = Layout("sequence", (n,)) if n is not None else None
        if layout is None and self.image_size is not None:
            layout = self.encoder.token_layout(self.image_size)
        if layout is not None:
            if num_tokens is None or layout.num_tokens == num_tokens:
                return layout
            if layout.kind == "sequence":
                check_prefix_length(num_tokens, layout.num_tokens, "the token count of ids")
                return layout
        if num_tokens is not None:
            side = round(num_tokens**0.5)
            if side * side == num_tokens:
                return Layout("grid", (side, side))
        raise ValueError(
            f"cannot infer the token layout of {num_tokens} tokens for image size {self.image_size}; "
            "pass layout=Layout('grid', (h, w))"
        )

    def rate_figures(self, ids_shape: Sequence[int], size: Sequence[int]) -> dict[str, Any]:
        depth = self.quantizer.depth_of(ids_shape[-1]) if len(ids_shape) == 2 else None
        bits = ids_shape[0] * self.bits_per_token(depth)
        return {"tokens_per_image": ids_shape[0], "depth": depth, "bits_per_image": bits,
                "bits_per_pixel": bits / (size[0] * size[1])}

    def timing_figures(self, items: int, samples: int, encode_s: float, decode_s: float | None) -> dict[str, float]:
        encode = {"encode_ms_per_image": 1e3 * encode_s / items, "encode_images_per_s": items / encode_s}
        if decode_s is None:
            return encode
        return encode | {"decode_ms_per_image": 1e3 * decode_s / items, "decode_images_per_s": items / decode_s}

    def quality_summary(self, metrics: dict[str, float]) -> dict[str, Any]:
        """PSNR, SSIM, LPIPS (when measured) and the PSNR of 2x2 and 4x4 thumbnails of the same images."""
        out = {"val_psnr_db": rounded(metrics, "psnr", 3), "val_ssim": rounded(metrics, "ssim", 4)}
        out |= {f"val_thumbnail_{s}x{s}_psnr_db": rounded(metrics, f"psnr_thumbnail_{s}x{s}", 3) for s in THUMBNAILS}
        return out | ({"val_lpips": rounded(metrics, "lpips", 4)} if "val/lpips" in metrics else {})

    def rate_summary(self, continuous: bool) -> dict[str, Any]:
        size = {"image_size": list(self.image_size) if self.image_size else None}
        if continuous:
            return {"tokens_per_image": self.num_tokens, **size}
        bits = self.bits_per_token()
        return {"tokens_per_image": self.num_tokens, "bits_per_token": round(bits, 3),
                "bits_per_image": round(self.num_tokens * bits, 1), **size}

    def scores(self, x_hat: Tensor, x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
        from discotok.metrics.image import psnr, ssim

        return {"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x)}

    def baseline_scores(self, x: Tensor) -> dict[str, Tensor]:
        """The PSNR of the 2x2 and 4x4 thumbnails of the same inputs."""
        from discotok.metrics.image import psnr, thumbnail

        return {f"psnr_thumbnail_{s}x{s}": psnr(thumbnail(x, s), x) for s in THUMBNAILS}

    def examples_path(self, out_dir: Path) -> tuple[str, Path]:
        return "reconstructions", Path(out_dir) / "reconstructions.png"

    def write_examples(
        self, out_dir: Path, x: Tensor, x_hat: Tensor, lengths: Tensor | None, loggers: Sequence[Any], step: int
    ) -> None:
        """``reconstructions.png``: inputs above their reconstructions, also logged as an image."""
        from torchvision.utils import make_grid

        from discotok.data.images import save_grid
        from discotok.media import log_image

        save_grid([x, x_hat], self.examples_path(out_dir)[1])
        log_image(loggers, "val/reconstructions", make_grid(torch.cat([x, x_hat]).add(1).div(2).clamp(0, 1),
                                                            nrow=len(x)), step)

    def reader(self, image_size: Any = None, max_seconds: float | None = None, max_duration: float | None = None,
               max_pixels: int | None = None) -> Any:
        """Images resized and cropped to ``image_size`` (default: the tokenizer's), at most ``max_pixels`` each."""
        from discotok.data.images import ImagePreprocessing
        from discotok.extraction.sources import ImageReader
        from discotok.io import ExtractError

        if max_seconds is not None:
            raise ExtractError("max_seconds (--max-seconds) applies to audio tokenizers; this one is an image tokenizer")
        size = self.image_size if image_size is None else image_size
        if size is None:
            raise ExtractError("the tokenizer has no image_size in its config; pass image_size (H, W)")
        size = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
        size = size * 2 if len(size) == 1 else size
        if len(size) != 2 or min(size) < 1:
            raise ExtractError(f"image_size must be one or two positive ints (H [W]), got {image_size!r}")
        return ImageReader(size, max_pixels, ImagePreprocessing.from_config(self.config.get("preprocessing")))

    def writer(self) -> Any:
        from discotok.data.images import ImageWriter

        return ImageWriter()

    def batch_decoder(self, tokenizer: Any, loaded: Any, batch_size: int, sampler: dict) -> Any:
        """Images of batch i (rows i * batch_size onwards), at the size the manifest records for 1-D decoders."""
        from discotok.extraction.checks import check_ids_array
        from discotok.extraction.decode import batch_sampler

        ids, layout = check_ids_array(tokenizer, *loaded)
        size = (loaded.manifest or {}).get("image_size")

        def decode_batch(i: int) -> list[Tensor]:
            start = i * batch_size
            return list(tokenizer.decode(ids[start : start + batch_size], layout, size=size,
                                         **batch_sampler(sampler, i)))

        return decode_batch

    def eval_reader(self, peers: Sequence[Modality], image_size: Any = None, max_seconds: float | None = None) -> Any:
        """Images at ``image_size`` (default: this tokenizer's, the first one's), every tokenizer coding that size."""
        from discotok.defaults import DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS

        return self.reader(image_size, max_seconds, DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS)

    def eval_format(self, reader: Any) -> Any:
        """The evaluation images as read; noted when this tokenizer was configured for another size."""
        from discotok.eval.formats import AsIs

        size = tuple(reader.size)
        if self.image_size is None or size == self.image_size:
            return AsIs()
        return AsIs(f"{size[0]}x{size[1]}", f"configured for {self.image_size[0]}x{self.image_size[1]}, codes the "
                                            f"{size[0]}x{size[1]} evaluation images at that size")

    def eval_protocol(self, reader: Any, data: Any, options: Any, device: Any) -> tuple[dict, dict]:
        from discotok.eval.protocol import image_protocol

        return image_protocol(reader, data, options, device)

    def eval_metrics(self, reader: Any, options: Any, nets: dict) -> tuple[list, Any]:
        """PSNR, SSIM, LPIPS (with its weights) and rFID (with Inception); pFID when asked for."""
        from discotok.eval.metrics import FrechetMetric, image_metrics

        metrics = image_metrics(nets.get("lpips"))
        metrics += [FrechetMetric(nets["fid"], nets["reference"])] if nets.get("fid") else []
        pfid = FrechetMetric(nets["fid"], nets["reference"], "pfid") if options.pfid_alpha is not None else None
        return metrics, pfid

    def eval_baselines(self, data: Any, results: list[dict], options: Any, nets: dict) -> dict[str, Any]:
        from discotok.eval.baselines.image import image_baselines

        return image_baselines(data, results, options, nets)

    def save_eval_examples(self, reader: Any, rows: list, labels: list[str], out_dir: Path, name: str) -> tuple[str, str]:
        """``reconstructions_NAME.png``: the originals, then one row per operating point."""
        from discotok.data.images import save_grid

        originals = torch.stack([x for x, _ in rows[0]])
        path = save_grid([originals] + [torch.stack([r for _, r in row]) for row in rows],
                         Path(out_dir) / f"reconstructions_{name}.png")
        return f"reconstructions_{name}", path.name

    def bench_input(self, batch_size: int, seconds: float) -> tuple[Tensor, dict]:
        """Seeded uniform random images at the configured size."""
        if self.image_size is None:
            raise ValueError("the tokenizer has no image_size to benchmark at")
        x = torch.rand(batch_size, 3, *self.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return x, {"image_size": list(self.image_size), "tokens_per_image": self.num_tokens,
                   "bits_per_image": self.num_tokens * self.bits_per_token()}

    def bench_figures(self, x: Tensor, ms: dict[str, float]) -> dict[str, float]:
        """Images per second of encode and decode; seconds per image of a training step (when timed)."""
        b = x.shape[0]
        out = {"encode_img_s": 1e3 * b / ms["encode_ms"], "decode_img_s": 1e3 * b / ms["decode_ms"]}
        if "train_step_ms" in ms:
            out |= {"train_s_per_img": ms["train_step_ms"] / 1e3 / b, "peak_gb": ms["peak_gb"]}
        return out

    @staticmethod
    def bench_table(rows: Sequence[dict]) -> str:
        header = ["target", "device", "batch", "size", "params M", "bits/img", "encode img/s", "decode img/s",
                  "train s/img", "train vs 1st", "peak GB"]
        return markdown_table(header, [
            [r["target"], r["device"], r["batch_size"], f"{r['image_size'][0]}x{r['image_size'][1]}",
             f"{r['params_m']:.2f}", f"{r['bits_per_image']:.0f}", f"{r['encode_img_s']:.1f}",
             f"{r['decode_img_s']:.1f}", f"{r['train_s_per_img']:.4f}", f"{r.get('train_vs_first', 1.0):.2f}",
             f"{r['peak_gb']:.2f} ({r['peak_memory']})"] for r in rows])
