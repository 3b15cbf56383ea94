"""(c) Post-training quantization against the same tokenizer trained discrete from the start
(TokenBridge's claim: quantizing a continuous tokenizer's latents after training, per dimension,
gives a discrete tokenizer about as good as one trained with the quantizer, without retraining).

Two ``titok_tiny`` tokenizers with 16 tokens of ``--dim`` latent dimensions, trained for the same steps on
Fashion-MNIST (32x32, batch 16): one continuous (``quantizer=identity``), then ``discotok
quantize-after`` with ``--levels`` levels per dimension fitted on training images (Lloyd-Max, quantile
and uniform boundaries); one trained with FSQ of the same levels per dimension from the start (the
same bits per token). Scored on held-out test images: PSNR and a Fréchet distance on a randomly
initialised FID InceptionV3 (not a published FID); the continuous tokenizer's own decode is the ceiling.

Usage: ``python scripts/repro_post_training_quantization.py [--steps 800] [--out outputs/repro_ptq]``;
writes ``results.json``, ``decodes.png`` and prints a markdown table. Seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from discotok import Tokenizer
from discotok.metrics import psnr
from discotok.quantize_after import quantize_after
from repro_common import RandomFeatureFID, fashion_mnist, held_out, train

TOKENIZER = ["experiment=titok_tiny", "optim.lr=1e-3", "optim.warmup_steps=100"]
METHODS = ("lloyd", "quantile", "uniform")


@torch.no_grad()
def reconstruct(tok: Tokenizer, x: torch.Tensor) -> torch.Tensor:
    """Decodes of ``x`` in batches of 100: ``decode(encode(x))``, or the forward pass of a continuous tokenizer."""
    if tok.quantizer.continuous:
        return torch.cat([tok(chunk).x_hat.clamp(-1, 1) for chunk in x.split(100)])
    return torch.cat([tok.decode(tok.encode(chunk)) for chunk in x.split(100)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800, help="training steps of each tokenizer (batch 16)")
    parser.add_argument("--dim", type=int, default=4, help="latent dimensions per token")
    parser.add_argument("--levels", type=int, default=8, help="levels per dimension (FSQ and the fitted quantizer)")
    parser.add_argument("--fit-images", type=int, default=2000, help="training images the levels are fitted on")
    parser.add_argument("--eval-images", type=int, default=256, help="held-out test images scored")
    parser.add_argument("--out", type=Path, default=Path("outputs/repro_ptq"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # on shared cores one thread is several times faster than two
    train_dir, test_dir = fashion_mnist(args.out, args.eval_images)
    sizes = [f"latent_dim={args.dim}"]
    continuous_dir, continuous_s = train("continuous", args.out, args.steps, train_dir, *TOKENIZER, *sizes,
                                         "quantizer=identity")
    fsq_dir, fsq_s = train("fsq", args.out, args.steps, train_dir, *TOKENIZER, *sizes, "quantizer=fsq",
                           f"quantizer.levels=[{','.join([str(args.levels)] * args.dim)}]")
    tokenizers = {"continuous (no quantization)": (continuous_dir, continuous_s)}
    for method in METHODS:
        out = args.out / f"ptq-{method}"
        record = quantize_after(continuous_dir, str(train_dir), out, [args.levels], method,
                                num_images=args.fit_images, overwrite=True)
        print(f"ptq {method}: fitted on {record['images']} images, mse {record['quantization_mse']:.4g}", file=sys.stderr)
        tokenizers[f"post-training {method}"] = (out, continuous_s)
    tokenizers["FSQ from the start"] = (fsq_dir, fsq_s)
    x = held_out(test_dir, args.eval_images)
    fid = RandomFeatureFID(args.out, x)
    rows, grid = [], [x[:10]]
    for label, (tok_dir, seconds) in tokenizers.items():
        tok = Tokenizer.from_pretrained(tok_dir)
        x_hat = reconstruct(tok, x)
        continuous = tok.quantizer.continuous
        rows.append({"tokenizer": label, "bits_per_token": None if continuous else round(math.log2(tok.codebook_size), 1),
                     "psnr_db": round(float(psnr(x_hat, x).mean()), 2), "fd_random_inception": round(fid(x_hat), 2),
                     "train_s": round(seconds, 1)})
        grid.append(x_hat[:10])
        print(rows[-1], file=sys.stderr)
    save_image(torch.cat(grid).add(1).div(2).clamp(0, 1), args.out / "decodes.png", nrow=10, padding=1)
    results = {"steps": args.steps, "batch_size": 16, "dim": args.dim, "levels": args.levels,
               "fit_images": args.fit_images, "eval_images": len(x),
               "note": "Frechet distance on a randomly initialised InceptionV3, not FID", "rows": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"Fashion-MNIST 32x32, titok_tiny with {args.dim}-d tokens, {args.steps} steps each, {args.levels} levels per "
          f"dimension, {len(x)} held-out test images; FD: random-init InceptionV3\n")
    print("| tokenizer | bits/token | PSNR dB | FD (random Inception) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['tokenizer']} | {r['bits_per_token'] or 'continuous'} | {r['psnr_db']} | {r['fd_random_inception']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
