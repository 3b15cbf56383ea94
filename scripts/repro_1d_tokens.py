"""Small-scale reproduction of the 1-D tokenizer claims on real images, at a fixed CPU budget.

(a) One flexible tokenizer (``experiment=flexible_tiny``: causal, nested dropout over prefix
    lengths 1, 2, 4, ..., 32, FSQ 8x5x5x5) trained once; held-out PSNR of ``decode(encode(x,
    num_tokens=k))`` for every k = 1, 2, 4, ..., 32 from that one checkpoint. ``--data
    fashion-mnist`` (default): whole Fashion-MNIST images padded to 32x32, scored on the first 500
    test images; ``--data photos``: random 32x32 crops of scikit-image's photos, scored on the
    held-out strips (the right-most 32 pixels of every photo, tiled: 80 tiles).
(b) A 1-D tokenizer (``experiment=titok_tiny``, 16 latent tokens) against the 2-D grid tokenizer
    with the same number of tokens (32x32 crops, factor 8: 4x4 = 16 tokens) and the same codebook
    (the default VQ, 1024 l2-normalised codes of size 8), same steps, batch and data (photo crops).

Every run is ``discotok train`` at batch 16 with one thread (``repro_common.train``).
Usage: ``python scripts/repro_1d_tokens.py [--steps 2000] [--data fashion-mnist|photos] [--out
outputs/repro_1d]``; writes ``results.json`` and prints markdown tables. Seeded; figures vary
slightly across machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from discotok import Tokenizer
from discotok.data.datamodule import ImageDataModule
from discotok.metrics import CodebookUsage, psnr
from repro_common import fashion_mnist, held_out, train

SIZE = (32, 32)
TEST_IMAGES = 500


def photo_tiles() -> torch.Tensor:
    """Every 32x32 tile of the held-out strips of the sample photos, (80, 3, 32, 32) in [-1, 1]."""
    dm = ImageDataModule(image_size=SIZE, val_samples=10**6)
    dm.setup()
    return torch.stack([dm.val_set[i] for i in range(len(dm.val_set))])


@torch.no_grad()
def score(tok: Tokenizer, x: torch.Tensor, num_tokens: int | None = None) -> dict:
    """Mean held-out PSNR and codebook usage of ``decode(encode(x))`` (optionally a k-token prefix)."""
    ids = tok.encode(x, num_tokens=num_tokens)
    usage = CodebookUsage(tok.codebook_size)
    usage.update(ids)
    return {
        "tokens": ids.shape[1],
        "bits_per_image": round(ids.shape[1] * tok.bits_per_token, 1),
        "psnr_db": round(float(psnr(tok.decode(ids), x).mean()), 2),
        "usage": round(usage.compute()["usage"], 3),
    }


def params_m(tok: Tokenizer) -> float:
    return round(sum(p.numel() for p in tok.parameters()) / 1e6, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of every run (batch 16)")
    parser.add_argument("--data", choices=["fashion-mnist", "photos"], default="fashion-mnist", help="data of (a)")
    parser.add_argument("--out", type=Path, default=Path("outputs/repro_1d"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tiles = photo_tiles()
    if args.data == "fashion-mnist":
        train_dir, test_dir = fashion_mnist(args.out, TEST_IMAGES)
        x = held_out(test_dir, TEST_IMAGES)
    else:
        train_dir, x = None, tiles
    results: dict = {"steps": args.steps, "batch_size": 16, "image_size": list(SIZE), "flexible_data": args.data,
                     "flexible_held_out": len(x), "photo_tiles": len(tiles)}

    name = f"flexible_tiny_{args.data}"
    flex_dir, flex_s = train(name, args.out, args.steps, train_dir, "experiment=flexible_tiny")
    flex = Tokenizer.from_pretrained(flex_dir)
    ks = [2**i for i in range(flex.modality.num_tokens.bit_length()) if 2**i <= flex.modality.num_tokens]
    results["flexible"] = {"train_s": round(flex_s, 1), "params_m": params_m(flex),
                           "by_k": [score(flex, x, k) for k in ks]}

    rows = {}
    for name, overrides in (("titok_tiny", ["experiment=titok_tiny"]), ("grid_16_tokens", [])):
        tok_dir, seconds = train(name, args.out, args.steps, None, *overrides)
        tok = Tokenizer.from_pretrained(tok_dir)
        rows[name] = {"train_s": round(seconds, 1), "params_m": params_m(tok), **score(tok, tiles)}
    results["one_d_vs_grid"] = rows

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    by_k = results["flexible"]["by_k"]
    print(f"(a) flexible_tiny on {args.data}, one checkpoint, {args.steps} steps, {len(x)} held-out 32x32 images\n")
    print("| k | bits/image | PSNR dB | codebook usage |\n|---|---|---|---|")
    for r in by_k:
        print(f"| {r['tokens']} | {r['bits_per_image']} | {r['psnr_db']} | {r['usage']} |")
    monotone = all(b["psnr_db"] >= a["psnr_db"] for a, b in zip(by_k, by_k[1:]))
    print(f"\nPSNR non-decreasing in k: {monotone}\n")
    print(f"(b) 16 tokens, VQ 1024 x 8 (cosine), {args.steps} steps, {len(tiles)} held-out photo tiles\n")
    print("| tokenizer | params M | tokens | bits/image | PSNR dB | codebook usage | train s |\n|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['params_m']} | {r['tokens']} | {r['bits_per_image']} | {r['psnr_db']} | {r['usage']} | {r['train_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
