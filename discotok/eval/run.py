"""``discotok eval``: one reproducible protocol over one or more tokenizers and one image set.

The set is the first ``num_images`` inputs of a source (folder, text file of paths,
WebDataset shards; sorted as ``discotok encode`` sorts them), each resized to cover
``image_size`` and centre cropped exactly as ``discotok encode`` does. Every tokenizer sees
the same images at the same size. For each tokenizer and operating point (prefix length k
of a flexible tokenizer, depth of a residual one) it measures PSNR, SSIM, LPIPS (with local
weights), rFID and optionally pFID against InceptionV3 statistics of the originals (cached
on disk under a fingerprint of the set, the preprocessing and the network's weights),
codebook usage and perplexity over the whole set, bits per image and per pixel, and encode
and decode time. The protocol is written into every report.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.eval.metrics import CodebookMetric, EvalBatch, FrechetMetric, LPIPSMetric, Metric, PSNRMetric, SSIMMetric
from discotok.eval.report import plot_quality_vs_k, plot_rate_distortion, save_grid, write_markdown
from discotok.extraction.encode import make_reader
from discotok.extraction.sources import ItemDataset, Source, collate_items, open_source
from discotok.losses.perceptual import LPIPS
from discotok.metrics.fid import FEATURE_DIM, INCEPTION_FILE, FeatureStats, default_inception_path, features_of
from discotok.metrics.fid import load_inception, weights_sha256
from discotok.quantizers.perturb import perturb_ids
from discotok.tokenizers.tokenizer import Tokenizer

REPORT_FORMAT = "discotok.eval"
STANDARD_FID_IMAGES = 50_000


@dataclass
class EvalOptions:
    """Settings of one evaluation (see ``evaluate``)."""

    image_size: int | Sequence[int] | None = None
    num_images: int | None = None
    batch_size: int = 16
    fid: bool = True
    fid_weights: str | None = None
    lpips_weights: str | None = None
    num_tokens: Sequence[int] | None = None
    depths: Sequence[int] | None = None
    pfid_alpha: float | None = None
    pfid_delta: int | None = None
    seed: int = 0
    cache_dir: str | None = None
    device: str = "cpu"
    workers: int = 0
    progress: bool = True
    grid_images: int = 8


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "discotok" / "fid-stats"


def operating_points(tok: Tokenizer, options: EvalOptions) -> list[dict[str, int]]:
    """Encode options to evaluate: every k of ``num_tokens`` (default for ``flexible``: 1, 2, 4, ..., N),
    every depth of ``depths`` (residual quantizers), else the tokenizer as it is."""
    layout = tok.default_layout()
    if layout.kind == "sequence" and (options.num_tokens or tok.config["encoder"]["name"] == "flexible"):
        n = layout.num_tokens
        ks = options.num_tokens or sorted({*(2**i for i in range(int(math.log2(n)) + 1)), n})
        bad = [k for k in ks if not 1 <= k <= n]
        if bad:
            raise ValueError(f"--num-tokens {bad} outside 1..{n} for this tokenizer")
        return [{"num_tokens": int(k)} for k in ks]
    if options.depths and tok.quantizer.depth is not None:
        bad = [d for d in options.depths if not 1 <= d <= tok.quantizer.depth]
        if bad:
            raise ValueError(f"--depth {bad} outside 1..{tok.quantizer.depth} for this tokenizer")
        return [{"depth": int(d)} for d in options.depths]
    return [{}]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


class EvalSet:
    """The evaluation images: the first ``num_images`` items of the source, loaded per pass."""

    def __init__(self, source: Source, reader, batch_size: int, workers: int, num_images: int | None) -> None:
        self.items = source.items[:num_images] if num_images else source.items
        self.source = Source(source.description, self.items)
        self.reader, self.batch_size, self.workers = reader, batch_size, workers
        self.skipped: list[dict] = []

    def batches(self) -> Any:
        loader = DataLoader(ItemDataset(self.items, self.reader), batch_size=self.batch_size,
                            num_workers=self.workers, collate_fn=collate_items)
        skipped = []
        for _, tensors, failures in loader:
            skipped += [{"source": self.items[i].key, "error": why} for i, why in failures]
            if tensors:
                yield torch.stack(tensors)
        self.skipped = skipped

    @property
    def num_used(self) -> int:
        return len(self.items) - len(self.skipped)


def reference_stats(data: EvalSet, net: torch.nn.Module, protocol: dict, cache_dir: Path) -> tuple[FeatureStats, dict]:
    """Inception statistics of the originals, from the cache when this exact set and protocol were seen."""
    from safetensors.torch import load_file, save_file

    key_data = {"set": data.source.fingerprint(), "num_items": len(data.items), **protocol}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()
    path = cache_dir / f"reference-{key[:32]}.safetensors"
    if path.is_file():
        stats = FeatureStats.from_state(load_file(str(path)))
        data.skipped = json.loads((cache_dir / f"reference-{key[:32]}.json").read_text())["skipped"]
        return stats, {"cache_file": str(path), "from_cache": True, "key": key}
    stats = FeatureStats(FEATURE_DIM)
    for x in data.batches():
        stats.update(features_of(net, x))
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_dir / f"reference-{key[:32]}.json") as tmp:
        tmp.write_text(json.dumps({**key_data, "skipped": data.skipped}, indent=1))
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in stats.state().items()}, str(tmp))
    return stats, {"cache_file": str(path), "from_cache": False, "key": key}


def _label(point: dict) -> str:
    return ", ".join(f"{'k' if k == 'num_tokens' else k}={v}" for k, v in point.items()) or "full"


def evaluate_point(tok: Tokenizer, point: dict, data: EvalSet, metrics: list[Metric], options: EvalOptions,
                   pfid: FrechetMetric | None) -> tuple[dict, list[Tensor]]:
    """One pass over the set with ``tok.encode(x, **point)``; returns figures and a few (x, x_hat) for a grid."""
    device = next(tok.parameters()).device
    size = data.reader.size
    generator = torch.Generator().manual_seed(options.seed)
    enc_s = dec_s = 0.0
    images, shape, grid = 0, None, []
    with torch.inference_mode():
        for x in data.batches():
            (ids, layout), t = _timed(lambda: tok.encode(x.to(device), return_layout=True, **point), device)
            enc_s += t
            x_hat, t = _timed(lambda: tok.decode(ids, layout, image_size=size), device)
            dec_s += t
            batch = EvalBatch(x, x_hat.float().cpu(), ids.cpu())
            for metric in metrics:
                metric.update(batch)
            if pfid is not None:
                noisy = perturb_ids(tok.quantizer, ids, options.pfid_alpha, options.pfid_delta, generator)
                pfid.update(EvalBatch(x, tok.decode(noisy, layout, image_size=size).float().cpu(), noisy.cpu()))
            if len(grid) < options.grid_images:
                grid += list(zip(x, batch.x_hat))[: options.grid_images - len(grid)]
            images += x.shape[0]
            shape = tuple(ids.shape[1:])
    if images == 0:
        raise ValueError("none of the evaluation images could be read")
    depth = shape[1] if len(shape) == 2 else None
    bits = shape[0] * math.log2(tok.codebook_size) * (depth or 1)
    figures: dict[str, Any] = {
        "point": point, "label": _label(point), "tokens_per_image": shape[0], "depth": depth,
        "bits_per_image": bits, "bits_per_pixel": bits / (size[0] * size[1]),
    }
    for metric in [*metrics, *([pfid] if pfid else [])]:
        figures.update(metric.compute())
    figures.update({
        "encode_ms_per_image": 1e3 * enc_s / images, "decode_ms_per_image": 1e3 * dec_s / images,
        "encode_images_per_s": images / enc_s, "decode_images_per_s": images / dec_s,
    })
    return figures, grid


def _names(paths: list[str | None]) -> list[str]:
    names, seen = [], {}
    for i, path in enumerate(paths):
        base = Path(path).name if path else f"tokenizer{i}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def evaluate(
    tokenizers: Sequence[Tokenizer | str | os.PathLike],
    data: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    **options: Any,
) -> dict:
    """Evaluate ``tokenizers`` on ``data``; write ``report.json``, ``report.md`` and PNG plots to ``output_dir``.

    ``options`` are the fields of ``EvalOptions``. Returns the report (also the JSON's content).
    """
    opts = EvalOptions(**options)
    device = torch.device(opts.device)
    paths = [None if isinstance(t, Tokenizer) else str(Path(t).resolve()) for t in tokenizers]
    toks = [t.to(device).eval() if isinstance(t, Tokenizer) else Tokenizer.from_pretrained(t, device=device)
            for t in tokenizers]
    if not toks:
        raise ValueError("give at least one tokenizer")
    names = _names(paths)
    reader = make_reader(toks[0], opts.image_size)
    data_set = EvalSet(open_source(data), reader, opts.batch_size, opts.workers, opts.num_images)
    protocol: dict[str, Any] = {
        "image_size": list(reader.size), **reader.describe(), "images_listed": len(data_set.items),
        "psnr": "per image, data range 2 on [-1, 1] (reconstructions clamped), mean over images",
        "ssim": "per image, torchmetrics SSIM (Gaussian window 11, sigma 1.5) on [0, 1], mean over images",
        "timing": "wall time of encode / decode calls on the device (synchronised), every batch, first included",
    }
    warns: list[str] = []
    net = None
    if opts.fid:
        weights = Path(opts.fid_weights).expanduser() if opts.fid_weights else default_inception_path()
        net = load_inception(weights, device)
        protocol["fid"] = {
            "network": "InceptionV3 of the FID protocol (torch-fidelity FeatureExtractorInceptionV3, pool3, 2048-d)",
            "input": f"originals and reconstructions quantised to uint8 at {reader.size[0]}x{reader.size[1]}, "
                     "resized to 299x299 inside the network (TF1-compatible bilinear)",
            "reference": "statistics of the evaluation images themselves (reconstruction FID)",
            "weights_file": str(weights.resolve()), "weights_sha256": weights_sha256(weights),
            "standard_weights_file": INCEPTION_FILE,
        }
        ref, protocol["fid"]["reference_stats"] = reference_stats(
            data_set, net, {k: protocol[k] for k in ("image_size", "preprocessing")} | {"weights": protocol["fid"]["weights_sha256"]},
            Path(opts.cache_dir) if opts.cache_dir else default_cache_dir())
    if opts.lpips_weights:
        vgg = Path(opts.lpips_weights).expanduser()
        lpips = LPIPS(vgg_weights=vgg).to(device).eval()
        protocol["lpips"] = {
            "network": "LPIPS v0.1 on VGG16 (discotok.losses.perceptual.LPIPS; lin layers from torchmetrics)",
            "vgg_weights_file": str(vgg.resolve()), "vgg_weights_sha256": weights_sha256(vgg),
            "input": "images in [-1, 1], distance per image, mean",
        }
    if opts.pfid_alpha is not None:
        if not net or opts.pfid_delta is None:
            raise ValueError("pFID needs FID (no --no-fid) and both --pfid-alpha and --pfid-delta")
        protocol["pfid"] = {"alpha": opts.pfid_alpha, "delta": opts.pfid_delta, "seed": opts.seed,
                            "perturbation": "each id with probability alpha replaced by one of its delta nearest codes "
                                            "(discotok.quantizers.perturb), reconstructions from the perturbed ids"}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(total=sum(len(operating_points(t, opts)) for t in toks), desc="eval", unit="point",
               file=sys.stderr, disable=not opts.progress)
    with bar:
        for name, path, tok in zip(names, paths, toks):
            rows = []
            for point in operating_points(tok, opts):
                metrics: list[Metric] = [PSNRMetric(), SSIMMetric(), CodebookMetric(tok.codebook_size)]
                metrics += [LPIPSMetric(lpips)] if opts.lpips_weights else []
                metrics += [FrechetMetric(net, ref)] if net else []
                pfid = FrechetMetric(net, ref, "pfid") if "pfid" in protocol else None
                figures, grid = evaluate_point(tok, point, data_set, metrics, opts, pfid)
                results.append({"tokenizer": name, "path": path, **figures})
                rows.append(grid)
                bar.update(1)
            originals = torch.stack([x for x, _ in rows[0]])
            save_grid([originals] + [torch.stack([r for _, r in grid]) for grid in rows], out / f"reconstructions_{name}.png")
    protocol["num_images"] = data_set.num_used
    if net is not None and data_set.num_used < FEATURE_DIM:
        warns.append(
            f"rFID over {data_set.num_used} images: fewer than the {FEATURE_DIM} feature dimensions, so the covariance is "
            f"rank-deficient and the figure is biased; it compares only with runs over this same set "
            f"(the standard protocol uses {STANDARD_FID_IMAGES:,} images)"
        )
    for message in warns:
        warnings.warn(message, stacklevel=2)
    report = {
        "format": REPORT_FORMAT, "version": 1, "protocol": protocol, "source": data_set.source.description,
        "set_fingerprint": data_set.source.fingerprint(), "results": results, "skipped": data_set.skipped,
        "warnings": warns, "options": {k: v for k, v in asdict(opts).items() if k not in ("progress",)},
        "environment": {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                        "machine": platform.machine(), "processor": platform.processor() or platform.machine()},
        "files": {"json": "report.json", "markdown": "report.md", "rate_distortion": "rate_distortion.png"},
    }
    plot_rate_distortion(results, out / "rate_distortion.png")
    for name in names:
        mine = [r for r in results if r["tokenizer"] == name]
        if len(mine) > 1 and "num_tokens" in mine[0]["point"]:
            plot_quality_vs_k(name, mine, out / f"quality_vs_k_{name}.png")
            report["files"][f"quality_vs_k_{name}"] = f"quality_vs_k_{name}.png"
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "report.md")
    return report
