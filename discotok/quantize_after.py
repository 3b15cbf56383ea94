"""``discotok quantize-after``: post-training quantization of a continuous tokenizer (TokenBridge-style).

A tokenizer trained with the ``identity`` quantizer has continuous tokens. This encodes a data set
to its latents, fits a per-dimension scalar quantizer to them (``discotok/quantizers/scalar.py``:
Lloyd-Max, quantile or uniform levels per dimension) and writes a new tokenizer directory with
the same encoder and decoder weights and the fitted ``scalar`` quantizer — a discrete tokenizer,
loadable by ``Tokenizer.from_pretrained``, without retraining.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from discotok.extraction.encode import make_reader
from discotok.extraction.sources import ItemDataset, collate_items, open_source
from discotok.defaults import DEFAULT_SAMPLE_CROPS
from discotok.quantizers.scalar import ScalarQuantizer
from discotok.tokenizers.files import CONFIG_NAME
from discotok.tokenizers.tokenizer import Tokenizer

SAMPLE_PHOTOS = "sample_photos"


def image_batches(tok: Tokenizer, data: str, num_images: int | None, batch_size: int) -> tuple[Iterator[Tensor], dict, list]:
    """Batches (B, 3, H, W) at the tokenizer's image size from ``data``, its description and the skipped inputs.

    ``sample_photos``: random crops of the training part of scikit-image's photos (as ``discotok
    train`` reads them; ``num_images`` of them, default 1024). Otherwise a folder, a text file of
    paths or WebDataset shards, preprocessed as ``discotok encode`` does (the first ``num_images``).
    """
    skipped: list[dict] = []
    if data == SAMPLE_PHOTOS:
        from discotok.data.datamodule import ImageDataModule

        dm = ImageDataModule(image_size=tok.modality.image_size)
        dm.setup()
        count = num_images or DEFAULT_SAMPLE_CROPS
        loader = DataLoader([dm.train_set[i] for i in range(count)], batch_size=batch_size)
        return iter(loader), {"source": SAMPLE_PHOTOS, "crops": count, "seed": dm.seed}, skipped
    reader = make_reader(tok)
    source = open_source(data)
    items = source.items[:num_images] if num_images else source.items

    def batches() -> Iterator[Tensor]:
        loader = DataLoader(ItemDataset(items, reader), batch_size=batch_size, collate_fn=collate_items)
        for loaded in loader:
            skipped.extend({"source": items[i].key, "error": why} for i, why in loaded.failures)
            if loaded.tensors:
                yield reader.collate(loaded.tensors)[0]

    return batches(), {**source.description, "items_used": len(items), **reader.describe()}, skipped


@torch.no_grad()
def collect_latents(tok: Tokenizer, batches: Iterator[Tensor], progress: bool = False) -> tuple[Tensor, int]:
    """Every token's latent vector (M, D) of the images in ``batches``, and the image count."""
    device = next(tok.parameters()).device
    rows, images = [], 0
    for x in tqdm(batches, desc="latents", unit="batch", file=sys.stderr, disable=not progress):
        z = tok.encode_latents(x.to(device))
        rows.append(z.reshape(-1, z.shape[-1]).float().cpu())
        images += x.shape[0]
    if not images:
        raise ValueError("none of the input images could be read")
    return torch.cat(rows), images


def quantize_after(
    tokenizer: str | Path,
    data: str,
    output: str | Path | None = None,
    levels: Sequence[int] = (8,),
    method: str = "lloyd",
    num_images: int | None = None,
    batch_size: int = 16,
    iterations: int = 30,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit a ``scalar`` quantizer to the latents of the continuous tokenizer at ``tokenizer`` on
    ``data`` and write the discrete tokenizer to ``output`` (default ``<tokenizer>-quantized``).

    Returns the record also stored under ``metadata.post_training_quantization`` of its config.
    """
    source_dir = Path(tokenizer)
    out = Path(output) if output else source_dir.with_name(f"{source_dir.name}-quantized")
    if (out / CONFIG_NAME).exists() and not overwrite:
        raise ValueError(f"{out} already holds a tokenizer; pass --overwrite to replace it")
    tok = Tokenizer.from_pretrained(source_dir, device=device)
    name = tok.config["quantizer"]["name"]
    if not tok.quantizer.continuous:
        raise ValueError(
            f"quantize-after fits a quantizer to continuous latents; {source_dir} has the discrete quantizer "
            f"{name!r} (train with quantizer=identity)"
        )
    if not tok.modality.pixels:
        raise ValueError(f"quantize-after reads images; {source_dir} is an {tok.modality.name} tokenizer")
    dim = tok.quantizer.dim
    quantizer = ScalarQuantizer(dim, levels)
    batches, description, skipped = image_batches(tok, data, num_images, batch_size)
    latents, images = collect_latents(tok, batches, progress)
    errors = quantizer.fit(latents, method, iterations)
    record = {
        "source_tokenizer": str(source_dir.resolve()), "method": method, "levels": quantizer.levels,
        "images": images, "latents": latents.shape[0], "data": description, "skipped": skipped,
        "latent_variance": float(latents.var(dim=0).mean()), "quantization_mse": errors["mse_after"],
        "uniform_grid_mse": errors["mse_before"],
    }
    config = copy.deepcopy(tok.config)
    config["quantizer"] = {"name": "scalar", "dim": dim, "levels": quantizer.levels}
    config["metadata"] = {**config.get("metadata", {}), "post_training_quantization": record}
    discrete = Tokenizer.from_config(config)
    discrete.encoder.load_state_dict(tok.encoder.state_dict())
    discrete.decoder.load_state_dict(tok.decoder.state_dict())
    discrete.quantizer.load_state_dict(quantizer.state_dict())
    discrete.save_pretrained(out)
    return {**record, "output": str(out)}
