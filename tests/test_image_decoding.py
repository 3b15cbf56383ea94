"""Fast image decoding for extraction: torchvision's PNG decoder gives PIL's pixels without importing the torchvision
package, JPEG draft mode covers the target."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from discotok.data.images import decode_png_at_size, load_image, load_image_pixels, pil_to_tensor, resize_center_crop


def pil_pixels(path, size) -> torch.Tensor:
    """The reference: PIL decode, RGB conversion, resize and crop, as uint8 (3, H, W)."""
    return pil_to_tensor(resize_center_crop(load_image(path), size)).add(1).mul(127.5).round().byte()


def variants() -> dict[str, Image.Image]:
    rgb = Image.fromarray(skdata.astronaut()[::8, ::8])  # 64x64
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    return {"RGB": rgb, "L": rgb.convert("L"), "P": palette, "P+transparency": transparent, "RGBA": rgba,
            "LA": rgb.convert("LA"), "1": rgb.convert("1"), "I;16": Image.fromarray(np.asarray(rgb.convert("L"),
                                                                                        dtype=np.uint16) * 200)}


@pytest.mark.parametrize("mode", sorted(variants()))
def test_png_pixels_equal_pil_for_every_mode(mode, tmp_path):
    path = tmp_path / f"{mode.replace('+', '_').replace(';', '_')}.png"
    variants()[mode].save(path)
    assert torch.equal(load_image_pixels(path, (64, 64)), pil_pixels(path, (64, 64)))
    assert torch.equal(load_image_pixels(path, (64, 64), path.read_bytes()), pil_pixels(path, (64, 64)))
    fast = decode_png_at_size(path, None, (64, 64))
    assert (fast is not None) == (mode in ("RGB", "L")), mode  # the plain cases take torchvision's path
    assert torch.equal(load_image_pixels(path, (32, 48)), pil_pixels(path, (32, 48)))  # another size: PIL


def test_png_op_is_torchvisions_decoder_and_leaves_its_package_unimported(tmp_path):
    path = tmp_path / "rgb.png"
    variants()["RGB"].save(path)
    from torchvision.io import decode_png

    expected = decode_png(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))
    assert torch.equal(decode_png_at_size(path, None, (64, 64)), expected)
    script = ("import sys; from discotok.data.images import decode_png_at_size; "
              f"assert decode_png_at_size({str(path)!r}, None, (64, 64)) is not None; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_jpeg_draft_mode_decodes_smaller_and_stays_close(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(skdata.astronaut()).save(path, quality=95)  # 512x512
    with Image.open(path) as img:
        img.draft("RGB", (64, 64))
        assert img.size == (64, 64)  # libjpeg's 1/8 scaling: an eighth of the pixels to decode, each way
    assert load_image(path, draft=100).size == (128, 128)  # the sides stay >= the requested 100
    fast = load_image_pixels(path, (64, 64)).float()
    full = pil_pixels(path, (64, 64)).float()
    assert fast.shape == full.shape == (3, 64, 64)
    psnr = 10 * torch.log10(255**2 / (fast - full).pow(2).mean())
    assert psnr > 30, f"draft-mode decode differs from the full decode by PSNR {psnr:.1f} dB"


def test_corrupt_png_still_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()[::8, ::8]).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(ValueError, match="broken.png"):
        load_image_pixels(path, (64, 64))
