"""``titok``: bytedance/1d-tokenizer's TiTok tokenizers (TiTok-L-32 / B-64 / S-128, BL-64 / BL-128 / SL-256-VQ8k,
TA-TiTok BL-32 / BL-64 / BL-128 VQ).

SOURCE is the publisher's hub layout, a directory as ``TiTok.save_pretrained`` (``PyTorchModelHubMixin``)
writes it and ``yucornetto/tokenizer_titok_l32_imagenet`` serves it: ``config.json`` (read as plain JSON:
``model.vq_model`` and ``dataset.preprocessing.crop_size``) and ``model.safetensors`` (or
``pytorch_model.bin``, read with ``weights_only=True``). The architecture is read from the tensors (widths,
depths, token count, codebook, the pixel decoder's levels) and checked against ``config.json``; a
disagreement is refused naming both. Attention heads are not in the tensors: the size names' (small 8, base
12, large 16), i.e. 64-wide heads, which is also the rule for widths no size name gives.

* Two-stage models (``finetune_decoder``, the TiTok-L-32 / B-64 / S-128 family, always ``is_legacy``): the
  ``titok`` decoder's head gives logits over MaskGIT-VQGAN's 1024 codes per 16x16 patch, and its
  ``pixel_decoder`` (``maskgit_vqgan`` with ``soft_codes``) decodes their softmax-weighted code vectors.
* Single-stage models (``finetune_decoder: false``, ``is_legacy: false``: the VQ-8k family): the head gives
  pixels, then a 3x3 convolution (``out_conv``).
* Legacy encoders (``is_legacy``, the default) read their latents through a reshape (``legacy_reshape``).
* The codebook is a ``vq`` with cosine search where ``use_l2_norm`` (l2-normalised codes), else Euclidean.
* TiTok takes and gives images in [0, 1], discotok [-1, 1]: the encoder and decoder record
  ``pixel_range: [0, 1]`` and map to and from it, so the ids are the reference's for the same picture. The
  resolution is ``crop_size`` (256 as published; other multiples of 16 resample the positions).

* TA-TiTok (``TATiTok``: the decoder's ``text_guidance_proj`` / ``text_guidance_positional_embedding``, the
  length and width ``text_context_length`` / ``text_embed_dim`` in config.json, 77 / 768 by default): the
  ``titok`` decoder with text guidance, which makes it conditioned: ``Tokenizer.decode(ids, condition=text)``
  with ``text`` (B, 77, 768), a CLIP text encoder's per-token output that the user computes. Encoding needs no
  text.

Refused: VAE models (``quantize_mode: vae``, continuous: TiTok's and TA-TiTok's are not discrete tokenizers),
stage-1 models (legacy without ``finetune_decoder``: their decoder gives code logits, not pixels).

The decoder takes ``missing_tokens: "drop"``: a prefix of k < N ids decodes as if only those k latents were
given, as One-D-Piece's ``decode(z, length=k)`` does (TiTok's own reference decodes full length only).
A TA-TiTok's prefix decodes the same way, its text guidance after the given latents (its reference decodes
full length only).

One-D-Piece (turingmotors/One-D-Piece) saves the same layout (its ``OneDPiece`` is a ``TiTok`` with the same
modules; the extra config keys ``model.type`` and ``strict_length_assertion`` are ignored) and loads as is:
tested against its code at 473665d (ids, and the decoding of prefixes of 1, 5 and 16 of 16 tokens).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, count, json_object, model_config, rename
from discotok.convert.hf_transformers import read_weights
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}  # width, layers, heads
PIXEL_RANGE = [0.0, 1.0]
OWN = [r"decoder\.mask_token", r"quantizer\.(cluster_size|initted)"]  # ours alone: nested dropout's mask, VQ usage
RES = {"norm1": "body.0", "conv1": "body.2", "norm2": "body.3", "conv2": "body.5", "nin_shortcut": "skip"}
TEXT_PROJ, TEXT_POSITIONS = "decoder.text_guidance_proj.weight", "decoder.text_guidance_positional_embedding"
ROWS = r"latent_tokens|(encoder|decoder)\.latent_token_positional_embedding|" + re.escape(TEXT_POSITIONS)  # (N, width)
BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
         "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
         "mlp.c_proj": "mlp.fc2"}


def vq_settings(config: object) -> tuple[dict, int]:
    """``model.vq_model`` and ``dataset.preprocessing.crop_size`` of a TiTok config.json."""
    try:
        vq = config["model"]["vq_model"]  # type: ignore[index]
        crop = config.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256)  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError):
        raise ConvertError("not a TiTok config.json: no model.vq_model") from None
    if not isinstance(vq, dict) or not isinstance(crop, int):
        raise ConvertError("not a TiTok config.json: model.vq_model is not an object or crop_size not an int")
    return vq, crop


def agree(what: str, config_value: object, tensor: str, tensor_value: object, shape: tuple) -> None:
    """``ConvertError`` naming config.json's value and the tensor's shape unless they agree."""
    if config_value != tensor_value:
        raise ConvertError(f"config.json says {what} {config_value} but {tensor} is {tuple(shape)}")


def shape(state: dict[str, Tensor], name: str) -> tuple[int, ...]:
    if name not in state:
        raise ConvertError(f"not a TiTok state dict: no tensor {name!r}")
    return tuple(state[name].shape)


def vit(state: dict[str, Tensor], part: str, size_name: object) -> dict:
    """Width, depth, heads and MLP ratio of the reference's ``encoder`` / ``decoder`` transformer."""
    width = shape(state, f"{part}.ln_pre.weight")[0]
    depth = count(state, rf"{part}\.transformer\.(\d+)\..+")
    if size_name in SIZES:
        agree(f"vit_{part[:3]}_model_size {size_name!r} (width, layers)", SIZES[size_name][:2],
              f"{part}.ln_pre.weight with {depth} transformer layers", (width, depth), (width,))
    heads = SIZES[size_name][2] if size_name in SIZES else width // 64
    if heads < 1 or width % heads:
        raise ConvertError(f"{part} width {width} has no 64-wide attention heads; size {size_name!r} is not TiTok's")
    mlp = shape(state, f"{part}.transformer.0.mlp.c_fc.weight")[0] / width
    return {"width": width, "depth": depth, "heads": heads, "mlp_ratio": mlp}


def grid_side(state: dict[str, Tensor], part: str, crop: int, patch: int) -> None:
    positions = shape(state, f"{part}.positional_embedding")
    agree(f"crop_size {crop} with patch size {patch}: positions", (crop // patch) ** 2 + 1,
          f"{part}.positional_embedding", positions[0], positions)


def pixel_decoder(state: dict[str, Tensor]) -> dict:
    """The ``maskgit_vqgan`` spec of the reference's ``pixel_decoder`` and ``pixel_quantize`` tensors."""
    codes, code_dim = shape(state, "pixel_quantize.embedding.weight")
    levels = count(state, r"pixel_decoder\.up\.(\d+)\..+")
    widths = [shape(state, f"pixel_decoder.up.{i}.block.0.conv2.weight")[0] for i in range(levels)]
    channels = math.gcd(*widths)
    out_channels = shape(state, "pixel_decoder.conv_out.weight")[0]
    return {"name": "maskgit_vqgan", "latent_dim": code_dim, "out_channels": out_channels,
            "channels": channels, "channel_mult": [w // channels for w in widths],
            "num_res_blocks": count(state, r"pixel_decoder\.mid\.(\d+)\..+"), "soft_codes": codes}


def titok_config(config: object, state: dict[str, Tensor]) -> dict:
    """Our tokenizer config for a TiTok config.json and its tensors (``ConvertError`` when they disagree)."""
    vq, crop = vq_settings(config)
    mode = vq.get("quantize_mode", "vq")
    two_stage, legacy = bool(vq.get("finetune_decoder", True)), bool(vq.get("is_legacy", True))
    if mode != "vq":
        kind = "TA-TiTok" if TEXT_PROJ in state else "TiTok"
        raise ConvertError(f"quantize_mode {mode!r} (a continuous {kind}: not a discrete tokenizer) is not converted; "
                           "FORMAT titok reads VQ models")
    if two_stage != legacy:
        what = "a stage-1 model (its decoder gives MaskGIT-VQGAN code logits, no pixels)" if legacy else \
            "finetune_decoder with is_legacy false (the reference cannot decode it either)"
        raise ConvertError(f"{what} is not converted")
    codebook_size, latent_dim = shape(state, "quantize.embedding.weight")
    num_tokens, _ = shape(state, "latent_tokens")
    agree("codebook_size", vq.get("codebook_size"), "quantize.embedding.weight", codebook_size,
          (codebook_size, latent_dim))
    agree("token_size", vq.get("token_size"), "quantize.embedding.weight", latent_dim, (codebook_size, latent_dim))
    agree("num_latent_tokens", vq.get("num_latent_tokens"), "latent_tokens", num_tokens, shape(state, "latent_tokens"))
    patch_shape = shape(state, "encoder.patch_embed.weight")
    in_channels, patch = patch_shape[1], patch_shape[-1]
    agree("vit_enc_patch_size", vq.get("vit_enc_patch_size"), "encoder.patch_embed.weight", patch, patch_shape)
    dec_patch = int(vq.get("vit_dec_patch_size", patch))
    grid_side(state, "encoder", crop, patch)
    grid_side(state, "decoder", crop, dec_patch)
    common = {"latent_dim": latent_dim, "num_tokens": num_tokens, "image_size": [crop, crop], "class_token": True,
              "pre_norm": True, "norm_eps": 1e-5, "pixel_range": PIXEL_RANGE}
    encoder = {"name": "titok", **common, "patch_size": patch, "in_channels": in_channels, "legacy_reshape": legacy,
               **vit(state, "encoder", vq.get("vit_enc_model_size"))}
    decoder = {"name": "titok", **common, "patch_size": dec_patch, "missing_tokens": "drop",
               **vit(state, "decoder", vq.get("vit_dec_model_size"))}
    width = decoder["width"]
    decoder |= text_guidance(vq, state, width)
    if two_stage:
        pixels = pixel_decoder(state)
        hidden, logits = shape(state, "decoder.ffn.0.weight")[0], shape(state, "decoder.ffn.2.weight")[0]
        agree("the pixel codebook size (from pixel_quantize)", pixels["soft_codes"], "decoder.ffn.2.weight", logits,
              shape(state, "decoder.ffn.2.weight"))
        factor = 2 ** (len(pixels["channel_mult"]) - 1)
        agree("vit_dec_patch_size", dec_patch, f"the pixel decoder's upsampling ({len(pixels['channel_mult'])} levels)",
              factor, shape(state, "pixel_decoder.conv_out.weight"))
        decoder |= {"head_mlp_ratio": hidden / width, "pixel_decoder": pixels, "head_channels": logits,
                    "out_channels": pixels["out_channels"]}
    else:
        out = shape(state, "decoder.conv_out.weight")[0]
        agree(f"vit_dec_patch_size {dec_patch}: values per patch", dec_patch * dec_patch * out, "decoder.ffn.0.weight",
              shape(state, "decoder.ffn.0.weight")[0], shape(state, "decoder.ffn.0.weight"))
        decoder |= {"out_channels": out, "out_conv": True}
    quantizer = {"name": "vq", "dim": latent_dim, "codebook_size": codebook_size, "code_dim": latent_dim,
                 "cosine": bool(vq.get("use_l2_norm", False)), "ema": False, "kmeans_init": False,
                 "commitment_weight": float(vq.get("commitment_cost", 0.25)), "codebook_weight": 1.0}
    return tokenizer_config(encoder, quantizer, decoder, image_size=[crop, crop], metadata={"converted_from": "titok"})


def text_guidance(vq: dict, state: dict[str, Tensor], width: int) -> dict:
    """The ``titok`` decoder's text guidance settings of a TA-TiTok (none for a TiTok), read from the tensors and
    checked against config.json (``text_context_length`` / ``text_embed_dim``, the reference's defaults 77 / 768)."""
    if TEXT_PROJ not in state:
        if "text_context_length" in vq or "text_embed_dim" in vq:
            raise ConvertError(f"config.json gives text_context_length / text_embed_dim (a TA-TiTok) but there is no "
                               f"tensor {TEXT_PROJ!r} (its decoder's text guidance)")
        return {}
    proj, positions = shape(state, TEXT_PROJ), shape(state, TEXT_POSITIONS)
    agree("text_embed_dim", vq.get("text_embed_dim", 768), TEXT_PROJ, proj[1], proj)
    agree("text_context_length", vq.get("text_context_length", 77), TEXT_POSITIONS, positions[0], positions)
    agree(f"the decoder width {width} (from decoder.ln_pre.weight)", width, TEXT_PROJ, proj[0], proj)
    return {"text_context_length": positions[0], "text_embed_dim": proj[1]}


def folded(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The reference's tensors in our shapes: each class embedding plus its position (the first row of the
    positional embedding) as one class token, the rest as the patch positions; 1x1 convolutions as linear
    weights; (N, width) tokens as (1, N, width)."""
    out = dict(state)
    for part in ("encoder", "decoder"):
        positions = out.pop(f"{part}.positional_embedding", None)
        token = out.pop(f"{part}.class_embedding", None)
        if positions is None or token is None:
            raise ConvertError(f"not a TiTok state dict: no {part}.positional_embedding / {part}.class_embedding")
        out[f"{part}.class_token"] = (token + positions[:1])[None]
        out[f"{part}.pos_embed.weight"] = positions[None, 1:]
    for name, tensor in out.items():
        if re.fullmatch(ROWS, name):
            out[name] = tensor[None]
        elif re.fullmatch(r"(encoder\.conv_out|decoder\.ffn\.[02])\.weight", name):
            out[name] = tensor.flatten(1)
    return out


def titok_rules(config: dict) -> list:
    """(pattern, our name of a match) for TiTok's tensors; the pixel decoder's levels count from the lowest
    resolution (the reference's ``up`` blocks from the highest)."""
    levels = len(config["decoder"].get("pixel_decoder", {}).get("channel_mult", []))
    head = "hidden.0" if "pixel_decoder" in config["decoder"] else "proj"
    rules = [
        (r"latent_tokens", lambda m: "encoder.latent_tokens"),
        (r"(encoder|decoder)\.latent_token_positional_embedding", lambda m: f"{m[1]}.latent_pos_embed"),
        (r"encoder\.patch_embed\.(weight|bias)", lambda m: f"encoder.patch_embed.proj.{m[1]}"),
        (r"(encoder|decoder)\.ln_pre\.(weight|bias)", lambda m: f"{m[1]}.norm_pre.{m[2]}"),
        (r"(encoder|decoder)\.ln_post\.(weight|bias)", lambda m: f"{m[1]}.transformer.norm.{m[2]}"),
        (r"(encoder|decoder)\.transformer\.(\d+)\.(ln_1|ln_2|attn\.in_proj_weight|attn\.in_proj_bias|attn\.out_proj"
         r"|mlp\.c_fc|mlp\.c_proj)(\.weight|\.bias|)", lambda m: f"{m[1]}.transformer.blocks.{m[2]}.{BLOCK[m[3]]}{m[4]}"),
        (r"encoder\.conv_out\.(weight|bias)", lambda m: f"encoder.proj.{m[1]}"),
        (r"decoder\.decoder_embed\.(weight|bias)", lambda m: f"decoder.embed.{m[1]}"),
        (r"decoder\.mask_token", lambda m: "decoder.patch_token"),  # the reference's mask token queries the patches
        (r"decoder\.ffn\.0\.(weight|bias)", lambda m: f"decoder.head.{head}.{m[1]}"),
        (r"decoder\.ffn\.2\.(weight|bias)", lambda m: f"decoder.head.proj.{m[1]}"),
        (r"decoder\.conv_out\.(weight|bias)", lambda m: f"decoder.out_conv.{m[1]}"),
        (r"decoder\.text_guidance_proj\.(weight|bias)", lambda m: f"decoder.text_proj.{m[1]}"),
        (re.escape(TEXT_POSITIONS), lambda m: "decoder.text_pos_embed"),
        (r"quantize\.embedding\.weight", lambda m: "quantizer.codebook"),
        (r"pixel_quantize\.embedding\.weight", lambda m: "decoder.pixel_decoder.codebook"),
        (r"pixel_decoder\.mid\.(\d+)\.(\w+)\.(weight|bias)",
         lambda m: f"decoder.pixel_decoder.mid.{m[1]}.{RES[m[2]]}.{m[3]}"),
        (r"pixel_decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)",
         lambda m: f"decoder.pixel_decoder.levels.{levels - 1 - int(m[1])}.res.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"pixel_decoder\.up\.(\d+)\.upsample_conv\.(weight|bias)",
         lambda m: f"decoder.pixel_decoder.levels.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"),
        (r"pixel_decoder\.(conv_in|norm_out|conv_out)\.(weight|bias)", lambda m: f"decoder.pixel_decoder.{m[1]}.{m[2]}"),
    ]
    return rules


@CONVERTERS.register("titok")
class TiTokConverter(Converter):
    """TiTok hub directories (``config.json`` with ``model.vq_model`` + ``model.safetensors``)."""

    source_patterns = ("config.json",)
    describe = "a TiTok hub directory (config.json with model.vq_model + model.safetensors or pytorch_model.bin)"

    @classmethod
    def recognises(cls, path: Path) -> bool:
        config = json_object(path)
        try:
            return config is not None and vq_settings(config) is not None
        except ValueError:
            return False

    def read(self, source: Path) -> Tokenizer:
        folder, config = model_config(source, self.describe)
        state = read_weights(folder)
        try:
            return titok_tokenizer(config, state)
        except ConvertError as err:
            raise ConvertError(f"{folder}: {err}") from None


def titok_tokenizer(config: object, state: dict[str, Tensor]) -> Tokenizer:
    """Our tokenizer of a TiTok ``config.json``'s content and the reference model's tensors, loaded strictly (also
    used in memory, by ``discotok bench reference titok``)."""
    ours = titok_config(config, state)
    return assemble(ours, rename(folded(state), titok_rules(ours)), OWN)
