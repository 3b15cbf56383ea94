"""NaN / inf never become ids: ``Tokenizer.encode`` names the bad batch items, quantizers refuse
non-finite latents, and extraction skips such items (listed in the manifest) and finishes the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from discotok import Tokenizer
from discotok.extraction import extract
from discotok.extraction.sources import ImageReader, LoadedBatch, encode_batch
from discotok.io import load_ids
from discotok.quantizers import QUANTIZERS
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config

ALL = {**TINY_QUANTIZERS, "scalar": {"name": "scalar", "dim": 8, "levels": [4]}}


@pytest.mark.parametrize("quantizer", sorted(ALL))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantizers_refuse_non_finite_latents(quantizer: str, bad: float) -> None:
    q = QUANTIZERS.build(ALL[quantizer]).eval()
    z = torch.randn(3, 5, 8)
    z[1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"item\(s\) \[1\].*NaN or infinite"):
        q(z)


@pytest.mark.parametrize("quantizer", sorted(ALL))
def test_encode_names_the_non_finite_items(quantizer: str, photo_batch: torch.Tensor) -> None:
    config = tiny_tokenizer_config("fsq")
    config["quantizer"] = dict(ALL[quantizer])
    tok = Tokenizer.from_config(config).eval()
    x = photo_batch[:4].clone()
    x[1, 0, 3, 3] = float("nan")
    x[3, 2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"batch item\(s\) \[1, 3\]: NaN or infinite values in the input"):
        tok.encode(x)


def overflow_on_white(tok: Tokenizer) -> None:
    """Make the encoder overflow (latents inf) on all-white images, as a too-large activation would."""

    def hook(module, args, out):
        white = args[0].flatten(1).min(1).values > 0.99
        out.z[white] = float("inf")
        return out

    tok.encoder.register_forward_hook(hook)


def test_encode_names_items_whose_latents_overflow(photo_batch: torch.Tensor) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq")).eval()
    overflow_on_white(tok)
    x = photo_batch[:3].clone()
    x[2] = 1.0
    with pytest.raises(ValueError, match=r"item\(s\) \[2\].*encoder's latents"):
        tok.encode(x)


class FloatImageReader(ImageReader):
    """An image reader whose items are already float images in [-1, 1] (ImageReader's are uint8 pixels)."""

    def collate(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return torch.stack(tensors), {}


def test_encode_batch_moves_non_finite_items_to_failures(photo_batch: torch.Tensor) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq")).eval()
    tensors = list(photo_batch[:4].clone())
    tensors[2][0, 0, 0] = float("nan")
    batch = LoadedBatch(indices=[10, 11, 12, 13], tensors=tensors, infos=[{}] * 4, failures=[(9, "unreadable")])
    out = encode_batch(tok, FloatImageReader((32, 32)), batch, {})
    assert out.indices == [10, 11, 13]
    assert [i for i, _ in out.failures] == [9, 12] and "NaN or infinite" in out.failures[1][1]
    expected = tok.encode(photo_batch[[0, 1, 3]])
    assert np.array_equal(np.stack(out.rows), expected.numpy())


def test_extraction_skips_an_overflowing_item_and_finishes(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((32, 32)).save(folder / f"{name}.png")
    Image.new("RGB", (32, 32), "white").save(folder / "blank.png")
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq")).eval()
    overflow_on_white(tok)
    report = extract(tok, folder, tmp_path / "out", batch_size=4, workers=0, progress=False)
    assert report.num_encoded == 3
    assert [s["source"] for s in report.skipped] == ["blank.png"]
    assert "encoder's latents" in report.skipped[0]["error"]
    ids, manifest, _ = load_ids(tmp_path / "out")
    assert [i["source"] for i in manifest["items"]] == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert ids.min() >= 0 and ids.max() < tok.codebook_size
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"] == report.skipped
