"""The ``encodec`` package's 24 kHz EnCodec for ``discotok bench reference encodec``.

``EncodecModel.encodec_model_24khz(pretrained=False)`` is the published architecture (SEANet, 2-layer LSTMs, 32
codebooks of 1024) with PyTorch's random init; its codebooks, which EnCodec starts at zero (every id would be 0),
are filled from a seeded normal distribution, each level's fitted to the residual frames that reach it on a second
of speech, so that the ids spread over every codebook. ``discotok.convert.encodec`` converts its ``state_dict`` in
memory (what ``discotok convert encodec`` does with the saved ``.th``). The reference's side is ``model.encode`` /
``model.decode`` at ``--bandwidth`` (``set_target_bandwidth``), its decoded audio clamped to [-1, 1] as our
``decode`` clamps it (its ``save_audio`` clamps to +-0.99); ours ``encode(x, depth=...)`` of the same number of
codebooks and ``decode``; ids are compared as ``(B, frames, depth)``.
"""

from __future__ import annotations

import argparse
import warnings
from importlib.metadata import version

import torch
from einops import rearrange

from discotok.bench.reference import Pair

REFERENCE = f"the encodec package {version('encodec')} (EncodecModel.encodec_model_24khz, random weights)"
BF16 = ("runs model.encode / decode under torch.autocast(\"cpu\", torch.bfloat16): its convolutions, LSTMs and matrix "
        "products in bf16, the distance product of its nearest-code search among them (ours searches in fp32)")


def labels(args: argparse.Namespace) -> list[str]:
    """One model: the 24 kHz EnCodec at ``--bandwidth``."""
    return [f"EnCodec 24 kHz, {args.bandwidth:g} kbps"]


def spread_codebooks(model: torch.nn.Module, seed: int = 0) -> None:
    """Fill EnCodec's codebooks (zero until its k-means init in training) level by level with seeded normal codes of
    the mean and per-channel spread of what reaches that level (its encoder's frames on a second of speech, less the
    levels before)."""
    from discotok.data.speech import speech_clip

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        residual = model.encoder(speech_clip(model.sample_rate, model.channels, 1.0))
        for layer in model.quantizer.vq.layers:
            embed = layer._codebook.embed
            frames = rearrange(residual, "b d t -> (b t) d")
            embed.copy_(frames.mean(0) + frames.std(0) * torch.randn(embed.shape, generator=g))
            residual = residual - layer.decode(layer.encode(residual))


def build(args: argparse.Namespace, label: str) -> Pair:
    """The reference EnCodec (random weights) and our conversion of it, on ``args.batch_size`` clips of speech."""
    from encodec import EncodecModel

    from discotok.convert.encodec import read_encodec

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm's deprecation
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    if args.bandwidth not in model.target_bandwidths:
        raise ValueError(f"--bandwidth {args.bandwidth:g} is not one of EnCodec 24 kHz's: "
                         f"{', '.join(f'{b:g}' for b in model.target_bandwidths)}")
    model.set_target_bandwidth(args.bandwidth)
    model.eval()
    spread_codebooks(model)
    ours = read_encodec(model.state_dict(), "the encodec package's 24 kHz model (in memory)")
    depth = ours.modality.depth_for_bandwidth(args.bandwidth)

    def encode(clips: torch.Tensor) -> torch.Tensor:
        (codes, _scale), = model.encode(clips)
        return codes.transpose(1, 2)

    def decode(ids: torch.Tensor) -> torch.Tensor:
        return model.decode([(ids.transpose(1, 2), None)]).clamp(-1, 1)

    x, rates = ours.modality.bench_input(args.batch_size, args.seconds)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return Pair(label, ours, x, rates, encode, decode, params, {"depth": depth})
