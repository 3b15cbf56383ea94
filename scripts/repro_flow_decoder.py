"""(a) Rectified-flow decoder against the deterministic decoder at k = 1, 2, 4, 8 tokens (FlexTok's claim:
with few tokens a generative decoder gives a plausible image where a deterministic one blurs).

Two flexible tokenizers with the same encoder (causal, 16 tokens, nested dropout over 1, 2, 4, 8, 16,
FSQ 8x5x5x5 = 1000 codes) and a decoder of the same size — ``titok`` (deterministic, L1 + L2) or
``flow`` (rectified flow, condition dropout 0.1) — trained for the same steps on Fashion-MNIST
(32x32, batch 16). Scored on held-out test images: PSNR of ``decode(encode(x, num_tokens=k))`` and a
Fréchet distance of the decodes to the originals on a randomly initialised FID InceptionV3 (not a
published FID). Flow decodes use ``--timesteps`` Euler steps, seed 0 and each ``--guidance`` scale; ``--predictions``
picks the flow decoders trained (velocity prediction, and/or x-prediction with the velocity loss).
Runs with one thread (``OMP_NUM_THREADS=1``): on shared cores it is several times faster than two.

Usage: ``python scripts/repro_flow_decoder.py [--steps 1500] [--out outputs/repro_flow]``; writes
``results.json``, ``decodes.png`` and prints a markdown table. Seeded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from discotok import Tokenizer
from discotok.metrics import psnr
from repro_common import RandomFeatureFID, fashion_mnist, held_out, train

KS = (1, 2, 4, 8)
ENCODER = ["encoder.num_tokens=16", "optim.lr=1e-3", "optim.warmup_steps=100"]


@torch.no_grad()
def decodes(tok: Tokenizer, x: torch.Tensor, k: int, **sampler) -> torch.Tensor:
    """``decode(encode(x, num_tokens=k))`` in batches of 100."""
    return torch.cat([tok.decode(tok.encode(chunk, num_tokens=k), **sampler) for chunk in x.split(100)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each tokenizer (batch 16)")
    parser.add_argument("--eval-images", type=int, default=128, help="held-out test images scored")
    parser.add_argument("--timesteps", type=int, default=25, help="Euler steps of the flow decodes")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="guidance scales of the flow decodes")
    parser.add_argument("--predictions", nargs="+", choices=("velocity", "data"), default=["velocity"],
                        help="flow decoders to train: velocity prediction, and/or x-prediction with the velocity loss")
    parser.add_argument("--out", type=Path, default=Path("outputs/repro_flow"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # on shared cores one thread is several times faster than two
    train_dir, test_dir = fashion_mnist(args.out, args.eval_images)
    runs = {"titok": train("titok", args.out, args.steps, train_dir, "experiment=flexible_tiny", *ENCODER)}
    for prediction in args.predictions:
        name = "flow" if prediction == "velocity" else f"flow_{prediction}"
        runs[name] = train(name, args.out, args.steps, train_dir, "experiment=flow_tiny", *ENCODER,
                           f"decoder.prediction={prediction}")
    x = held_out(test_dir, args.eval_images)
    fid = RandomFeatureFID(args.out, x)
    flow = [{"timesteps": args.timesteps, "guidance_scale": g, "seed": 0} for g in args.guidance]
    rows, grid = [], [x[:10]]
    for name, (tok_dir, seconds) in runs.items():
        tok = Tokenizer.from_pretrained(tok_dir)
        for sampler in flow if name.startswith("flow") else [{}]:
            for k in KS:
                x_hat = decodes(tok, x, k, **sampler)
                prediction = tok.config["decoder"].get("prediction")
                label = name if not sampler else f"flow ({prediction}, cfg {sampler['guidance_scale']:g})"
                rows.append({"decoder": label, "k": k, "bits": round(k * tok.bits_per_token, 1),
                             "psnr_db": round(float(psnr(x_hat, x).mean()), 2), "fd_random_inception": round(fid(x_hat), 2),
                             "train_s": round(seconds, 1)})
                grid.append(x_hat[:10])
                print(rows[-1], file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(grid).add(1).div(2).clamp(0, 1), args.out / "decodes.png", nrow=10, padding=1)
    results = {"steps": args.steps, "batch_size": 16, "eval_images": len(x), "timesteps": args.timesteps,
               "reference_fd_note": "Frechet distance on a randomly initialised InceptionV3, not FID", "rows": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"Fashion-MNIST 32x32, {args.steps} steps, {len(x)} held-out test images; FD: random-init InceptionV3\n")
    print("| decoder | k | bits/image | PSNR dB | FD (random Inception) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoder']} | {r['k']} | {r['bits']} | {r['psnr_db']} | {r['fd_random_inception']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
