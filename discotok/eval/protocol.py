"""The evaluation set and the protocol written into every report of ``discotok eval``.

``EvalSet`` is the first N inputs of a source, read per pass by the reader ``discotok
encode`` uses; ``image_protocol`` / ``audio_protocol`` describe how the set is read and what
every figure means (and load the networks the image metrics need); ``reference_stats``
caches the originals' InceptionV3 statistics under a fingerprint of the set and protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from discotok.atomic import atomic_path
from discotok.eval.metrics import PSNR_CEILING_DB
from discotok.extraction.sources import ItemDataset, Source, collate_items
from discotok.losses.perceptual import LPIPS
from discotok.metrics.fid import FEATURE_DIM, INCEPTION_FILE, FeatureStats, default_inception_path, features_of
from discotok.metrics.fid import load_inception, weights_sha256

if TYPE_CHECKING:
    from discotok.eval.options import EvalOptions


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "discotok" / "fid-stats"


class EvalSet:
    """The evaluation inputs: the first ``num_images`` items of the source, loaded per pass."""

    def __init__(self, source: Source, reader, batch_size: int, workers: int, num_images: int | None) -> None:
        self.items = source.items[:num_images] if num_images else source.items
        self.source = Source(source.description, self.items)
        self.reader, self.batch_size, self.workers = reader, batch_size, workers
        self.skipped: list[dict] = []
        self.infos: list[dict] = []

    def batches(self) -> Any:
        """``(x, extra)`` per batch: ``reader.collate``'s batch and keyword arguments (audio: ``lengths``)."""
        loader = DataLoader(ItemDataset(self.items, self.reader), batch_size=self.batch_size,
                            num_workers=self.workers, collate_fn=collate_items)
        skipped, infos = [], []
        for batch in loader:
            skipped += [{"source": self.items[i].key, "error": why} for i, why in batch.failures]
            infos += batch.infos
            if batch.tensors:
                yield self.reader.collate(batch.tensors)
        self.skipped, self.infos = skipped, infos

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
    for x, _ in data.batches():
        stats.update(features_of(net, x))
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_dir / f"reference-{key[:32]}.json") as tmp:
        tmp.write_text(json.dumps({**key_data, "skipped": data.skipped}, indent=1))
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in stats.state().items()}, str(tmp))
    return stats, {"cache_file": str(path), "from_cache": False, "key": key}


def image_protocol(reader, data_set: EvalSet, opts: EvalOptions, device: torch.device) -> tuple[dict, dict]:
    """The image protocol, and the networks its metrics need: FID network and reference statistics, LPIPS."""
    protocol: dict[str, Any] = {
        "image_size": list(reader.size), **reader.describe(), "images_listed": len(data_set.items),
        "psnr": "per image, data range 2 on [-1, 1] (reconstructions clamped), at most the PSNR of 8-bit rounding "
                f"noise ({PSNR_CEILING_DB:.2f} dB; psnr_at_ceiling counts the images there), mean over images",
        "ssim": "per image, torchmetrics SSIM (Gaussian window 11, sigma 1.5) on [0, 1], mean over images",
        "timing": "wall time of encode / decode calls on the device (synchronised), every batch, first included",
    }
    nets: dict[str, Any] = {"fid": None, "reference": None, "lpips": None}
    if opts.fid:
        weights = Path(opts.fid_weights).expanduser() if opts.fid_weights else default_inception_path()
        nets["fid"] = load_inception(weights, device)
        protocol["fid"] = {
            "network": "InceptionV3 of the FID protocol (torch-fidelity FeatureExtractorInceptionV3, pool3, 2048-d)",
            "input": f"originals and reconstructions quantised to uint8 at {reader.size[0]}x{reader.size[1]}, "
                     "resized to 299x299 inside the network (TF1-compatible bilinear)",
            "reference": "statistics of the evaluation images themselves (reconstruction FID)",
            "weights_file": str(weights.resolve()), "weights_sha256": weights_sha256(weights),
            "standard_weights_file": INCEPTION_FILE,
        }
        nets["reference"], protocol["fid"]["reference_stats"] = reference_stats(
            data_set, nets["fid"],
            {k: protocol[k] for k in ("image_size", "preprocessing")} | {"weights": protocol["fid"]["weights_sha256"]},
            Path(opts.cache_dir) if opts.cache_dir else default_cache_dir())
    if opts.lpips_weights:
        vgg = Path(opts.lpips_weights).expanduser()
        nets["lpips"] = LPIPS(vgg_weights=vgg).to(device).eval()
        protocol["lpips"] = {
            "network": "LPIPS v0.1 on VGG16 (discotok.losses.perceptual.LPIPS; lin layers from torchmetrics)",
            "vgg_weights_file": str(vgg.resolve()), "vgg_weights_sha256": weights_sha256(vgg),
            "input": "images in [-1, 1], distance per image, mean",
        }
    if opts.pfid_alpha is not None:
        if not nets["fid"] or opts.pfid_delta is None:
            raise ValueError("pFID needs FID (no --no-fid) and both --pfid-alpha and --pfid-delta")
        protocol["pfid"] = {"alpha": opts.pfid_alpha, "delta": opts.pfid_delta, "seed": opts.seed,
                            "perturbation": "each id with probability alpha replaced by one of its delta nearest codes "
                                            "(discotok.quantizers.perturb), reconstructions from the perturbed ids"}
    return protocol, nets


def audio_protocol(reader, data_set: EvalSet, opts: EvalOptions) -> dict:
    """The audio protocol: how clips are read and what every figure means."""
    if opts.lpips_weights or opts.pfid_alpha is not None:
        raise ValueError("LPIPS and pFID are image metrics; leave out --lpips-weights and --pfid-* for audio tokenizers")
    protocol: dict[str, Any] = {
        **reader.describe(), "clips_listed": len(data_set.items),
        "operating_points": "every --depth (residual quantizers; default 1, 2, 4, ..., depth), at its bit rate",
        "si_snr": "scale-invariant SNR in dB per clip over its valid samples (torchmetrics), mean over channels, "
                  "then over clips",
        "mel_distance": "multi-scale log-mel L1 per clip (DAC's: windows 32..2048, 5..320 mel bands), mean over clips",
        "stft_distance": "multi-resolution STFT distance per clip (spectral convergence + log-magnitude L1, "
                         "FFT 512/1024/2048), mean over clips",
        "codebook": "usage and perplexity over every clip's valid frames (padding excluded), per level, averaged",
        "timing": "wall time of encode / decode calls on the device (synchronised), every batch, first included; "
                  "real-time factor = compute seconds / seconds of audio (below 1: faster than real time)",
    }
    if opts.pesq_stoi:
        protocol["pesq"] = ("wide-band PESQ (ITU-T P.862.2, pesq package) per clip on the channel mean resampled to "
                            "16 kHz, mean over the clips it scores (pesq_unscored: clips under 0.25 s or without speech)")
        protocol["stoi"] = ("STOI (pystoi, resampled internally to 10 kHz) per clip on the channel mean, mean over the "
                            "clips it scores (stoi_unscored: fewer than 30 frames of speech, about 0.4 s)")
    return protocol
