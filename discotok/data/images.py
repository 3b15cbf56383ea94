"""Reading images safely: clear errors naming the file, any mode converted to RGB.

``load_image`` refuses an image of more than ``max_pixels`` pixels (``DEFAULT_MAX_PIXELS``,
2**26: 8192 x 8192) from its header, before decoding it: a 381 KB PNG can declare 13376 x 13376
pixels. 16-bit images are scaled to 8 bits by the format's range (0..65535 -> 0..255), in
row blocks of at most ``CONVERT_BLOCK`` pixels, so no full-size wider temporaries are made.

``ImagePreprocessing`` is how a file becomes a tokenizer's input where a publisher's own differs from ours (a
tokenizer config's ``preprocessing``): the resize filter and how alpha is blended on white.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from discotok.atomic import atomic_path
from discotok.defaults import DEFAULT_MAX_PIXELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_UNCHANGED = 0  # torchvision's ImageReadMode.UNCHANGED
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CONVERT_BLOCK = 1 << 18
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
                  "bilinear": Image.Resampling.BILINEAR}
ALPHA_BLENDS = ("round", "floor")


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image file becomes pixels before the resize-and-centre-crop to the tokenizer's size.

    ``resize_filter``: ``"bicubic"`` (ours: JPEGs decoded at a reduced size that still covers the target, PIL's
    ``reducing_gap=3`` on large reductions, both for speed) or a publisher's filter (``"lanczos"``,
    ``"bilinear"``), applied exactly as PIL's plain ``resize`` of the fully decoded image.
    ``alpha_blend``: transparent pixels blended on white, ``"round"`` (PIL's ``alpha_composite``) or ``"floor"``
    (``(1 - a) * 255 + a * rgb`` truncated to 8 bits, as Chameleon's ``image_tokenizer.py``).
    """

    resize_filter: str = "bicubic"
    alpha_blend: str = "round"

    def __post_init__(self) -> None:
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(RESIZE_FILTERS)}, got {self.resize_filter!r}")
        if self.alpha_blend not in ALPHA_BLENDS:
            raise ValueError(f"alpha_blend must be one of {list(ALPHA_BLENDS)}, got {self.alpha_blend!r}")

    @classmethod
    def from_config(cls, spec: Any) -> "ImagePreprocessing":
        """From a tokenizer config's ``preprocessing`` object (None: ours); ``ValueError`` naming a bad key."""
        if spec is None:
            return cls()
        if not isinstance(spec, dict) or set(spec) - {"resize_filter", "alpha_blend"}:
            raise ValueError(f"'preprocessing' must be an object with 'resize_filter' and / or 'alpha_blend', "
                             f"got {spec!r}")
        return cls(**spec)

    @property
    def exact(self) -> bool:
        """Whether the resize is a publisher's, without our speed shortcuts (JPEG draft, ``reducing_gap``)."""
        return self.resize_filter != "bicubic"


DEFAULT_PREPROCESSING = ImagePreprocessing()


class ImageLoadError(ValueError):
    """An input file could not be read as an image; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def iter_files(root: str | os.PathLike, recursive: bool = True) -> Iterator[Path]:
    """Regular, non-hidden files below ``root`` in sorted order (hidden folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist or is not a folder")
    entries = sorted(root.rglob("*") if recursive else root.iterdir())
    for p in entries:
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield p


def sixteen_to_eight_bits(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (modes ``I;16*``, or ``I`` holding 0..65535) as 8-bit ``L``, scaled by
    the format's range (round(v * 255 / 65535); values outside 0..65535 clipped), block by block."""
    arr = np.asarray(img)
    out = np.empty(arr.shape, dtype=np.uint8)
    rows = max(1, CONVERT_BLOCK // max(1, arr.shape[1]))
    for start in range(0, arr.shape[0], rows):
        block = arr[start : start + rows].astype(np.int64 if arr.dtype.kind == "i" else np.uint32)
        np.clip(block, 0, 65535, out=block)
        block *= 255
        block += 32767
        block //= 65535
        out[start : start + rows] = block
    return Image.fromarray(out, mode="L")


def load_image(
    path: str | os.PathLike,
    data: bytes | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: int | None = None,
    alpha_blend: str = "round",
) -> Image.Image:
    """Open ``path`` as an RGB PIL image (grayscale, palette, 16-bit and RGBA converted).

    RGBA is composited on white so transparent regions do not turn black (``alpha_blend``: rounded, or
    truncated as ``ImagePreprocessing`` says). With ``data``
    the image is decoded from those bytes (e.g. a member of a tar shard) and ``path``
    only names it in errors. An image of more than ``max_pixels`` pixels (None: no limit of
    ours; Pillow still refuses twice its ``Image.MAX_IMAGE_PIXELS``) is refused before decoding.
    ``draft=m``: a JPEG is decoded at a reduced size (libjpeg's DCT scaling by 1/2, 1/4 or 1/8,
    PIL's draft mode) that keeps both sides at least ``m`` pixels.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # our own limit replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path if data is None else io.BytesIO(data))
        with img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    path, f"image of {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) is over the limit of "
                    f"{max_pixels} pixels (max_pixels raises it)")
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageLoadError(path, f"image too large ({err})") from None
    except UnidentifiedImageError:
        kind = "corrupt or unsupported image" if path.suffix.lower() in IMAGE_EXTENSIONS else "not an image file"
        raise ImageLoadError(path, kind) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(path, f"cannot read image ({err})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if alpha_blend == "floor":
            values = np.asarray(rgba, dtype=np.float64)
            alpha = values[:, :, 3:] / 255.0
            return Image.fromarray(((1 - alpha) * 255 + alpha * values[:, :, :3]).astype(np.uint8), "RGB")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in SIXTEEN_BIT_MODES:
        img = sixteen_to_eight_bits(img)
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: Sequence[int], resize_filter: str = "bicubic",
                       reducing_gap: float | None = 3.0) -> Image.Image:
    """Resize so the image covers (H, W) (``resize_filter`` of ``RESIZE_FILTERS``), then crop the centre."""
    h, w = size
    scale = max(h / img.height, w / img.width)
    new = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
    img = img.resize(new, RESIZE_FILTERS[resize_filter], reducing_gap=reducing_gap)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def pil_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [-1, 1]."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_pil(x: Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [-1, 1] -> RGB PIL image."""
    arr = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy(), mode="RGB")


@functools.cache
def png_op() -> Callable[..., Tensor] | None:
    """torchvision's libpng decoder op (``decode_png(data, mode, apply_exif_orientation)``), loaded from its
    ``image.so`` without importing the ``torchvision`` package (whose import, through its models and ops, costs
    about a second of start-up); None where that library is missing or does not load."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    library = Path(spec.origin).parent / "image.so"
    try:
        torch.ops.load_library(str(library))
        return torch.ops.image.decode_png
    except (OSError, RuntimeError, AttributeError):
        return None


def decode_png_at_size(path: str | os.PathLike, data: bytes | None, size: Sequence[int]) -> Tensor | None:
    """uint8 (3, H, W) of an 8-bit RGB or grayscale PNG that is already ``size`` (H, W), decoded by torchvision's
    libpng op (``png_op``; about twice as fast as PIL on small files; PNG is lossless, so the pixels are PIL's);
    None for any other file (alpha, 16-bit, another size, not a PNG, unreadable) or without the op: those take the
    PIL path."""
    if Path(path).suffix.lower() != ".png":
        return None
    decode = png_op()
    if decode is None:
        return None
    try:
        raw = Path(path).read_bytes() if data is None else data
    except OSError:
        return None
    # IHDR: bit depth at byte 24, colour type at 25 (0 grayscale, 2 RGB; palette and alpha take PIL's path)
    if len(raw) < 26 or raw[:8] != PNG_SIGNATURE or raw[24] != 8 or raw[25] not in (0, 2):
        return None
    try:
        img = decode(torch.frombuffer(bytearray(raw), dtype=torch.uint8), PNG_UNCHANGED, True)
    except RuntimeError:
        return None
    if img.shape[0] not in (1, 3) or tuple(img.shape[1:]) != tuple(size):
        return None
    return img.expand(3, -1, -1).contiguous() if img.shape[0] == 1 else img


def load_image_pixels(
    path: str | os.PathLike, size: Sequence[int], data: bytes | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
    preprocessing: ImagePreprocessing = DEFAULT_PREPROCESSING,
) -> Tensor:
    """Load ``path`` (or ``data`` named ``path``; at most ``max_pixels``), resize-and-centre-crop to ``size``:
    uint8 (3, H, W).

    PNGs already at ``size`` go through ``decode_png_at_size``; with our ``preprocessing``, JPEGs are decoded at a
    reduced size (``load_image``'s ``draft``) that still covers ``size``; the rest through PIL alone.
    """
    pixels = decode_png_at_size(path, data, size)
    if pixels is not None:
        return pixels
    exact = preprocessing.exact
    img = load_image(path, data, max_pixels, draft=None if exact else max(size), alpha_blend=preprocessing.alpha_blend)
    img = resize_center_crop(img, size, preprocessing.resize_filter, reducing_gap=None if exact else 3.0)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def pixels_to_tensor(pixels: Tensor) -> Tensor:
    """uint8 pixels (..., 3, H, W) -> float in [-1, 1], as ``pil_to_tensor`` gives."""
    return pixels.float().div(127.5).sub(1.0)


def load_image_tensor(
    path: str | os.PathLike, size: Sequence[int], data: bytes | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Tensor:
    """Load ``path`` (or ``data`` named ``path``; at most ``max_pixels``), resize-and-centre-crop to ``size``,
    return (3, H, W) in [-1, 1]."""
    return pixels_to_tensor(load_image_pixels(path, size, data, max_pixels))


def save_grid(rows: Sequence[Tensor], path: str | os.PathLike) -> Path:
    """One row per tensor (N, 3, H, W) in [-1, 1] (originals first, then reconstructions), as a PNG, atomically."""
    from torchvision.utils import make_grid, save_image

    images = torch.cat([r.float().cpu() for r in rows]).add(1).div(2).clamp(0, 1)
    with atomic_path(path) as tmp:
        save_image(make_grid(images, nrow=rows[0].shape[0], padding=2), tmp, format="png")
    return Path(path)


class ImageWriter:
    """Writes one decoded image (3, H, W) in [-1, 1] as ``<stem>.png``, atomically."""

    suffix = ".png"

    def write(self, path: Path, item: Tensor) -> None:
        with atomic_path(path) as tmp:
            tensor_to_pil(item).save(tmp, format="PNG")
