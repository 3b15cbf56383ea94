"""Emu3's VQ-VAE (MoVQ) in the transformers layout (``Emu3VQVAE``, ``model_type`` ``emu3_vqgan``) -> our tokenizer.

The ``taming`` encoder with Emu3's options (attention heads, the image taken as ``temporal_downsample_factor``
frames through the causal temporal layers and ``quant_conv``), a Euclidean ``vq`` on the raw codes (no
projections: the decoder needs the codes themselves) and the ``movq`` decoder (``post_quant_conv``, the temporal
layers, code-modulated norms); the image is the first decoded frame, as ``Emu3VQVAE.decode`` returns it.
transformers' attention projections are ``Linear`` layers, ours 1x1 convolutions (the same weights).

What ``encode`` takes: images (B, 3, H, W) in [-1, 1], H and W multiples of 2^(levels - 1) (8 for Emu3);
the processor's rescaling and normalisation (``preprocessor_config.json`` beside the weights, else
``Emu3ImageProcessor``'s defaults: 1/255 and CLIP's mean and std) are recorded as the encoder's
``input_scale`` / ``input_shift`` and undone at the decoder's output. The processor's resize (to an area
between 512^2 and 1024^2 pixels, sides multiples of 8) is the caller's: the tokenizer encodes the size it
gets; its nominal ``image_size`` is 512x512 (64x64 ids).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, assemble, rename
from discotok.convert.processor import processor_affine
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGE_SIZE = 512
ENCODER_RES = {"norm1": "body.0", "conv1": "body.2", "norm2": "body.3", "conv2": "body.5"}
MID = {"block_1": "mid.0", "attn_1": "mid.1", "attn_norm": "mid.1.norm", "block_2": "mid.2"}
ATTN = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "proj_out"}


def emu3_name(name: str, levels: int) -> str:
    """Our name of one of transformers' ``Emu3VQVAE`` tensors (``levels``: resolution levels)."""
    top = {"quant_conv.": "encoder.quant_conv.", "post_quant_conv.": "decoder.post_quant_conv.",
           "quantize.embedding.weight": "quantizer.codebook"}
    for theirs, ours in top.items():
        if name.startswith(theirs):
            return ours + name[len(theirs):]
    name = re.sub(r"^encoder\.down_block\.down\.", "encoder.conv_blocks.", name)
    name = re.sub(r"^decoder\.up_block\.up\.(\d+)\.", lambda m: f"decoder.conv_blocks.{levels - 1 - int(m[1])}.", name)
    name = re.sub(r"\.middle_block\.(block_1|attn_1|attn_norm|block_2)\.", lambda m: f".{MID[m[1]]}.", name)
    name = re.sub(r"\.block\.(\d+)\.", r".res.\1.", name)
    name = re.sub(r"\.attn_norms\.(\d+)\.", r".attn.\1.norm.", name)
    name = re.sub(r"\.(q_proj|k_proj|v_proj|out_proj)\.", lambda m: f".{ATTN[m[1]]}.", name)
    name = name.replace(".nin_shortcut.", ".skip.")
    if name.startswith("encoder."):  # the taming encoder's residual blocks are nn.Sequential bodies
        name = re.sub(r"\.(res\.\d+|mid\.[02])\.(norm1|conv1|norm2|conv2)\.", lambda m: f".{m[1]}.{ENCODER_RES[m[2]]}.", name)
    return name


def emu3_config(config: dict, folder: Path) -> dict:
    """Our tokenizer config for an ``Emu3VQVAEConfig`` (as its ``config.json`` holds it)."""
    try:
        mult = [int(m) for m in config["channel_multiplier"]]
        shape = {"channels": int(config["base_channels"]), "channel_mult": mult,
                 "num_res_blocks": int(config["num_res_blocks"]), "heads": int(config["num_attention_heads"]),
                 "attn_levels": [int(i) for i in config["attn_resolutions"]]}
        latent, embed = int(config["latent_channels"]), int(config["embed_dim"])
        frames, codebook_size = int(config["temporal_downsample_factor"]), int(config["codebook_size"])
        in_channels, out_channels = int(config.get("in_channels", 3)), int(config.get("out_channels", 3))
    except (KeyError, TypeError, ValueError) as err:
        raise ConvertError(f"{folder}: config.json is not a complete Emu3VQVAEConfig ({type(err).__name__}: {err})") \
            from None
    if config.get("double_latent", False):
        raise ConvertError(f"{folder}: an Emu3 VQ-VAE with double_latent is not converted (Emu3's is False)")
    if latent != embed:
        raise ConvertError(f"{folder}: latent_channels {latent} != embed_dim {embed}: Emu3's decoder needs them equal")
    affine = processor_affine(folder, 1 / 255, CLIP_MEAN, CLIP_STD)
    encoder = {"name": "taming", "latent_dim": latent, "in_channels": in_channels, "embed_dim": embed,
               "temporal_downsample": frames, "input_scale": affine["scale"], "input_shift": affine["shift"], **shape}
    quantizer = {"name": "vq", "dim": embed, "codebook_size": codebook_size, "ema": False, "kmeans_init": False,
                 "commitment_weight": 0.25, "codebook_weight": 1.0}
    decoder = {"name": "movq", "latent_dim": embed, "out_channels": out_channels, "temporal_upsample": frames,
               "output_scale": affine["scale"], "output_shift": affine["shift"], **shape}
    preprocessing = {k: affine[k] for k in ("rescale", "mean", "std")}
    return tokenizer_config(encoder, quantizer, decoder, image_size=[IMAGE_SIZE, IMAGE_SIZE],
                            metadata={"converted_from": "transformers emu3_vqgan", "preprocessing": preprocessing})


def read_emu3(state: dict[str, Tensor], config: dict, folder: Path) -> Tokenizer:
    """The tokenizer of transformers' ``Emu3VQVAE`` tensors and config."""
    ours = emu3_config(config, folder)
    levels = len(ours["encoder"]["channel_mult"])
    tensors = rename(state, [(r".+", lambda m: emu3_name(m[0], levels))])
    for name, tensor in tensors.items():
        if re.fullmatch(r".+\.(attn\.\d+|mid\.1)\.(q|k|v|proj_out)\.weight", name) and tensor.ndim == 2:
            tensors[name] = tensor[:, :, None, None]  # Linear -> 1x1 convolution
    try:
        return assemble(ours, tensors, [r"quantizer\.(cluster_size|initted)"])
    except ConvertError as err:
        raise ConvertError(f"{folder}: {err}") from None
