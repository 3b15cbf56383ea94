"""``cosmos``: NVIDIA Cosmos-Tokenizer's discrete image tokenizers (Cosmos-0.1-Tokenizer-DI8x8, DI16x16).

SOURCE is what the publisher's hub repositories (``nvidia/Cosmos-Tokenizer-DI8x8``) hold: TorchScript files
traced from ``DiscreteImageTokenizer``: ``encoder.jit`` (encoder, ``quant_conv``, quantizer) with
``decoder.jit`` (``inv_quant.quantizer``, ``post_quant_conv``, decoder), or ``autoencoder.jit`` (the whole
model, the same names without ``inv_quant.``). Give a folder holding them, ``autoencoder.jit``, or either
of ``encoder.jit`` / ``decoder.jit`` (its sibling is read too). The files are read as data
(``discotok.convert.torchscript``): no TorchScript is loaded or run.

The architecture is read from the tensors: the ``cosmos`` encoder and decoder (Haar wavelet patching of a
patch size read from ``conv_in``'s width for RGB images; widths, levels, residual blocks, where the
attention and the down- and upsamplings are), FSQ of the levels the file's ``quantizer._levels`` holds
([8, 8, 8, 5, 5, 5]: 64000 codes) with ``quant_conv`` / ``post_quant_conv`` (1x1, ``z_channels`` <-> 6) as its
projections. Cosmos's FSQ is vector-quantize-pytorch's (tanh bound with eps 1e-3, the first channel the least
significant digit of an id), which is ours. Images are in [-1, 1], as ours (the publisher maps pixels
0..255 to [-1, 1] too); the image size recorded is the publisher's configured 1024 (any multiple of the
compression encodes). Refused with a clear error: continuous (CI) and video (DV) tokenizers, residual FSQ,
VQ and LFQ quantizers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, count, rename
from discotok.convert.torchscript import read_torchscript, script_tensors
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_SIZE = 1024
IN_CHANNELS = 3
HAAR = 0.7071067811865476
RES = {"norm1": "body.0", "conv1": "body.2", "norm2": "body.3", "conv2": "body.5", "nin_shortcut": "skip"}
MID = {"block_1": "0", "attn_1": "1", "block_2": "2"}
FIXED = (r"encoder\.patcher\.(wavelets|_arange)", r"decoder\.unpatcher\.(wavelets|_arange)",
         r"quantizer\.(_levels|_basis|implicit_codebook)")


def source_files(source: Path) -> list[Path]:
    """The TorchScript files of ``source``: ``autoencoder.jit``, or ``encoder.jit`` and ``decoder.jit``."""
    folder = source if source.is_dir() else source.parent
    if source.is_dir() and (folder / "autoencoder.jit").is_file():
        return [folder / "autoencoder.jit"]
    if source.is_dir() or source.name in ("encoder.jit", "decoder.jit"):
        pair = [folder / "encoder.jit", folder / "decoder.jit"]
        absent = [p.name for p in pair if not p.is_file()]
        if absent:
            raise ConvertError(f"{source}: a Cosmos tokenizer needs autoencoder.jit, or encoder.jit with decoder.jit "
                               f"(missing: {', '.join(absent)})")
        return pair
    return [source]


def cosmos_tensors(source: Path) -> dict[str, Tensor]:
    """The tensors of ``source``'s TorchScript files under ``DiscreteImageTokenizer``'s names."""
    state: dict[str, Tensor] = {}
    for path in source_files(source):
        for name, tensor in script_tensors(read_torchscript(path)).items():
            state[name.removeprefix("inv_quant.")] = tensor
    return state


def check_fixed(state: dict[str, Tensor]) -> list[int]:
    """The FSQ levels of ``state``, after checking the constant buffers are what the ``cosmos`` components compute
    (Haar wavelets, mixed-radix basis, the first channel least significant)."""
    if "encoder.conv_in.weight" not in state or "decoder.conv_out.weight" not in state:
        raise ConvertError("not a Cosmos image tokenizer: no encoder.conv_in / decoder.conv_out tensors "
                           "(both the encoder and the decoder are needed)")
    if state["encoder.conv_in.weight"].ndim != 4:
        raise ConvertError("a Cosmos video tokenizer (3-D convolutions); only the discrete image ones (DI) convert")
    if "quantizer._levels" not in state:
        kind = ("residual FSQ" if any(k.startswith("quantizer.layers.") for k in state) else
                "VQ" if "quantizer.embedding.weight" in state else
                "a continuous tokenizer (CI, no quantizer)" if not any(k.startswith("quantizer.") for k in state)
                else "a quantizer other than FSQ")
        raise ConvertError(f"{kind}: only Cosmos's FSQ image tokenizers (DI8x8, DI16x16) convert")
    levels = [int(v) for v in state["quantizer._levels"].tolist()]
    basis = torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0)
    if "quantizer._basis" in state and not torch.equal(state["quantizer._basis"].long(), basis):
        raise ConvertError(f"FSQ basis {state['quantizer._basis'].tolist()} is not levels {levels}'s mixed radix")
    for name in ("encoder.patcher.wavelets", "decoder.unpatcher.wavelets"):
        if name in state and not torch.allclose(state[name].float(), torch.full((2,), HAAR), atol=1e-2):
            raise ConvertError(f"{name} {state[name].tolist()}: only Haar wavelet patching (patch_method='haar') "
                               "converts")
    return levels


def numbers(state: dict[str, Tensor], pattern: str) -> list[int]:
    """The sorted distinct integers the first group of ``pattern`` takes over the names of ``state`` (levels)."""
    return sorted({int(m[1]) for k in state if (m := re.fullmatch(pattern, k))})


def cosmos_config(state: dict[str, Tensor], levels: list[int]) -> dict:
    """Our tokenizer config read from Cosmos's tensors."""
    channels, patched = state["encoder.conv_in.weight"].shape[:2]
    patch_size = math.isqrt(patched // IN_CHANNELS)
    if patch_size**2 * IN_CHANNELS != patched:
        raise ConvertError(f"encoder.conv_in takes {patched} channels, not an RGB image's Haar bands")
    latent_dim = int(state["encoder.conv_out.weight"].shape[0])
    num_levels = count(state, r"encoder\.down\.(\d+)\..+")
    mult = [int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // channels for i in range(num_levels)]
    downsamples = count(state, r"encoder\.down\.(\d+)\.downsample\..+")
    blocks = count(state, r"encoder\.down\.0\.block\.(\d+)\..+")
    shape = {"channels": int(channels), "channel_mult": mult, "num_res_blocks": blocks,
             "patch_size": patch_size, "spatial_compression": patch_size * 2**downsamples}
    encoder = {"name": "cosmos", "latent_dim": latent_dim, "in_channels": IN_CHANNELS, **shape,
               "attn_levels": numbers(state, r"encoder\.down\.(\d+)\.attn\..+")}
    decoder = {"name": "cosmos", "latent_dim": latent_dim, "out_channels": IN_CHANNELS, **shape,
               "attn_levels": numbers(state, r"decoder\.up\.(\d+)\.attn\..+")}
    if latent_dim == len(levels):
        raise ConvertError(f"z_channels equal to the FSQ width ({latent_dim}) are not supported")
    quantizer = {"name": "fsq", "dim": latent_dim, "levels": levels}
    return tokenizer_config(encoder, quantizer, decoder, image_size=[IMAGE_SIZE, IMAGE_SIZE],
                            metadata={"converted_from": "cosmos", "pixel_range": [-1, 1]})


def cosmos_rules(num_levels: int) -> list:
    """(pattern, our name of a match) for Cosmos's tensors (``num_levels`` resolutions)."""
    res = r"(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)"
    return [
        (rf"encoder\.down\.(\d+)\.block\.(\d+)\.{res}",
         lambda m: f"encoder.conv_blocks.{m[1]}.res.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"encoder\.down\.(\d+)\.(attn\.\d+|downsample)\.(.+)", lambda m: f"encoder.conv_blocks.{m[1]}.{m[2]}.{m[3]}"),
        (rf"decoder\.up\.(\d+)\.block\.(\d+)\.{res}",
         lambda m: f"decoder.conv_blocks.{num_levels - 1 - int(m[1])}.res.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"decoder\.up\.(\d+)\.(attn\.\d+|upsample)\.(.+)",
         lambda m: f"decoder.conv_blocks.{num_levels - 1 - int(m[1])}.{m[2]}.{m[3]}"),
        (rf"(encoder|decoder)\.mid\.(block_[12])\.{res}", lambda m: f"{m[1]}.mid.{MID[m[2]]}.{RES[m[3]]}.{m[4]}"),
        (r"(encoder|decoder)\.mid\.attn_1\.(.+)", lambda m: f"{m[1]}.mid.1.{m[2]}"),
        (r"quant_conv\.(weight|bias)", lambda m: f"quantizer.project_in.{m[1]}"),
        (r"post_quant_conv\.(weight|bias)", lambda m: f"quantizer.project_out.{m[1]}"),
    ]


@CONVERTERS.register("cosmos")
class CosmosConverter(Converter):
    """Cosmos-Tokenizer's discrete image tokenizers, from the publisher's TorchScript files."""

    source_patterns = ("autoencoder.jit",)
    describe = "a Cosmos-Tokenizer DI folder (autoencoder.jit, or encoder.jit + decoder.jit) or one of its .jit files"

    def read(self, source: Path) -> Tokenizer:
        if not source.exists():
            raise ConvertError(f"{source}: no such file or folder (expected {self.describe})")
        state = cosmos_tensors(source)
        try:
            levels = check_fixed(state)
            config = cosmos_config(state, levels)
        except ConvertError as err:
            raise ConvertError(f"{source}: {err}") from None
        state = {k: v for k, v in state.items() if not any(re.fullmatch(p, k) for p in FIXED)}
        tensors = rename(state, cosmos_rules(len(config["encoder"]["channel_mult"])))
        for key in ("quantizer.project_in.weight", "quantizer.project_out.weight"):
            if key in tensors:
                tensors[key] = tensors[key].flatten(1)
        return assemble(config, tensors)
