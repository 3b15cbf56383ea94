"""Mimi (Kyutai's 12.5 Hz speech codec) in transformers' layout (``MimiModel``) -> the ``mimi`` encoder and
decoder and the ``split_rvq`` quantizer.

transformers saves Mimi flat (``encoder.layers.*``, ``encoder_transformer.*``, ``downsample.*``,
``quantizer.*``, ``upsample.*``, ``decoder_transformer.*``, ``decoder.layers.*``), without weight norm;
every convolution becomes our weight-normed one (g = the norm of each output slice, v = the weight), the
attention's q, k and v projections one fused ``qkv``, and each codebook ``embed_sum / cluster_usage``
(its EMA statistics kept for fine-tuning). The 1x1 projections of the quantizer groups have no bias in
Mimi: ours are zero. The frame stride and the upsampling's groups are read from the tensors.

Ids are (B, frames, depth), the semantic level first, as transformers' ``audio_codes`` transposed;
``depth=k`` gives the first k levels (transformers' ``num_quantizers=k``). Sample rate 24 kHz, hop 1920.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from discotok.convert.base import ConvertError, assemble, rename, split_weight_norm
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

FIXED = {"use_causal_conv": True, "pad_mode": "constant", "trim_right_ratio": 1.0, "use_conv_shortcut": False,
         "hidden_act": "gelu", "attention_bias": False}
BLOCK = {"input_layernorm": "norm1", "post_attention_layernorm": "norm2", "self_attn.qkv_proj": "attn.qkv",
         "self_attn.o_proj": "attn.proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2", "self_attn_layer_scale": "scale1",
         "mlp_layer_scale": "scale2"}
UNIT = {"block.1": "conv1", "block.3": "conv2"}
CODEBOOK = {"embed": "codebook", "embed_sum": "embed_sum", "cluster_usage": "cluster_size"}
EPSILON = 1e-5  # transformers' and moshi's clamp of the codebooks' cluster usage


def check_fixed(config: dict) -> None:
    """``ConvertError`` unless the parts of a transformers Mimi config we do not parametrise are Mimi's."""
    wrong = {k: config.get(k) for k, v in FIXED.items() if config.get(k, v) != v}
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        wrong["rope_parameters.rope_type"] = rope.get("rope_type")
    heads = int(config.get("num_attention_heads", 8))
    if int(config.get("num_key_value_heads") or heads) != heads:
        wrong["num_key_value_heads"] = config.get("num_key_value_heads")
    if int(config.get("head_dim") or 0) not in (0, int(config.get("hidden_size", 512)) // heads):
        wrong["head_dim"] = config.get("head_dim")
    if wrong:
        raise ConvertError(f"a Mimi with {wrong} is not converted (Mimi's: causal zero-padded convolutions, identity "
                           f"skips, GELU, plain RoPE, as many key/value heads as heads)")


def mimi_config(config: dict, state: dict[str, Tensor], pad_to: str = "stride") -> dict:
    """Our tokenizer config from transformers' ``MimiConfig`` fields and the frame-rate convolutions' shapes;
    ``pad_to``: how the encoder treats a length that is not a multiple of the hop (see the ``mimi`` encoder)."""
    check_fixed(config)
    dim = int(config.get("hidden_size", 512))
    for key in ("downsample.conv.weight", "upsample.conv.weight"):
        if key not in state:
            raise ConvertError(f"not a Mimi with a frame-rate conversion: no tensor {key!r}")
    stride = int(state["downsample.conv.weight"].shape[-1]) // 2
    groups = dim // max(1, int(state["upsample.conv.weight"].shape[1]))
    rope = config.get("rope_parameters") or {}
    growth = int(config.get("dilation_growth_rate", 2))
    common = {
        "dim": dim, "channels": int(config.get("num_filters", 64)),
        "ratios": list(config.get("upsampling_ratios") or [8, 6, 5, 4]),
        "dilations": [growth**j for j in range(int(config.get("num_residual_layers", 1)))],
        "kernel_size": int(config.get("kernel_size", 7)), "last_kernel_size": int(config.get("last_kernel_size", 3)),
        "residual_kernel_size": int(config.get("residual_kernel_size", 3)), "compress": int(config.get("compress", 2)),
        "layers": int(config.get("num_hidden_layers", 8)), "heads": int(config.get("num_attention_heads", 8)),
        "mlp_dim": int(config.get("intermediate_size", 2048)), "context": config.get("sliding_window", 250),
        "layer_scale": float(config.get("layer_scale_initial_scale", 0.01)),
        "rope_theta": float(rope.get("rope_theta", 10_000.0)), "norm_eps": float(config.get("norm_eps", 1e-5)),
        "frame_stride": stride,
    }
    channels = int(config.get("audio_channels", 1))
    code_dim = int(config.get("vector_quantization_hidden_dimension", 256))
    if int(config.get("codebook_dim") or code_dim) != code_dim:
        raise ConvertError(f"codebook_dim {config.get('codebook_dim')} differs from "
                           f"vector_quantization_hidden_dimension {code_dim}")
    quantizer = {"name": "split_rvq", "dim": dim, "code_dim": code_dim, "depth": int(config.get("num_quantizers", 32)),
                 "semantic_depth": int(config.get("num_semantic_quantizers", 1)),
                 "codebook_size": int(config.get("codebook_size", 2048)), "ema": True, "decay": 0.99,
                 "kmeans_init": False, "commitment_weight": 1.0}
    return tokenizer_config({"name": "mimi", "in_channels": channels, **common, "pad_to": pad_to}, quantizer,
                            {"name": "mimi", "out_channels": channels, "upsample_groups": groups, **common},
                            modality="audio", sample_rate=int(config.get("sampling_rate", 24_000)), channels=channels,
                            metadata={"converted_from": "moshi Mimi" if pad_to == "hop" else "transformers MimiModel"})


def merged(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' tensors with q/k/v fused (``qkv_proj``), codebooks as ``embed`` (with ``embed_sum`` and
    ``cluster_usage`` kept, ``initialized`` dropped when it is 1), the quantizer's 1x1 projections as matrices
    and every convolution split into weight norm's ``weight_g`` / ``weight_v``."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".self_attn.q_proj.weight")]:
        parts = [key.replace(".q_proj.", f".{p}_proj.") for p in "qkv"]
        if all(p in out for p in parts):
            out[key.replace(".q_proj.", ".qkv_proj.")] = torch.cat([out.pop(p) for p in parts])
    for key in [k for k in state if k.endswith(".codebook.embed_sum")]:
        usage = key.replace(".embed_sum", ".cluster_usage")
        if usage in out:
            out[key.replace(".embed_sum", ".embed")] = out[key].float() / out[usage].float().clamp(min=EPSILON)[:, None]
        flag = key.replace(".embed_sum", ".initialized")
        if flag in out and bool((out[flag] == 1).all()):
            del out[flag]
    for key in [k for k in state if re.fullmatch(r"quantizer\.\w+\.(in|out)put_proj\.weight", k)]:
        out[key] = out[key][..., 0]
    return split_weight_norm(out)


def mimi_rules(config: dict) -> list:
    """(pattern, our name of a match) for transformers' Mimi tensors (weight norm already renamed)."""
    stages, units = len(config["encoder"]["ratios"]), len(config["encoder"]["dilations"])
    step = units + 2  # modules per SEANet stage: the residual units, an ELU and the (transposed) convolution
    conv = r"conv\.(.+)"

    def unit(first: int):
        return lambda m: (f"stages.{(int(m[2]) - first) // step}.units.{(int(m[2]) - first) % step}"
                          f".{UNIT[m[3]]}.conv.{m[4]}")

    def stage(first: int):
        return lambda m: (int(m[2]) - first) // step

    return [
        (rf"(encoder|decoder)\.layers\.0\.{conv}", lambda m: f"{m[1]}.seanet.stem.conv.{m[2]}"),
        (rf"(encoder)\.layers\.(\d+)\.(block\.1|block\.3)\.{conv}", lambda m: f"encoder.seanet.{unit(1)(m)}"),
        (rf"(decoder)\.layers\.(\d+)\.(block\.1|block\.3)\.{conv}", lambda m: f"decoder.seanet.{unit(3)(m)}"),
        (rf"(encoder|decoder)\.layers\.{2 + stages * step}\.{conv}", lambda m: f"{m[1]}.seanet.head.conv.{m[2]}"),
        (rf"(encoder)\.layers\.(\d+)\.{conv}",
         lambda m: f"encoder.seanet.stages.{stage(2 + units)(m)}.down.conv.{m[3]}"),
        (rf"(decoder)\.layers\.(\d+)\.{conv}", lambda m: f"decoder.seanet.stages.{stage(2)(m)}.up.conv.{m[3]}"),
        (r"(encoder|decoder)_transformer\.layers\.(\d+)\.(\w+(?:\.\w+)?)\.(weight|bias|scale)",
         lambda m: f"{m[1]}.transformer.blocks.{m[2]}.{BLOCK.get(m[3], m[3])}.{m[4]}"),
        (rf"downsample\.{conv}", lambda m: f"encoder.downsample.conv.{m[1]}"),
        (rf"upsample\.{conv}", lambda m: f"decoder.upsample.conv.{m[1]}"),
        (r"quantizer\.(semantic|acoustic)_residual_vector_quantizer\.(in|out)put_proj\.weight",
         lambda m: f"quantizer.{m[1]}.project_{m[2]}.weight"),
        (r"quantizer\.(semantic|acoustic)_residual_vector_quantizer\.layers\.(\d+)\.codebook\.(\w+)",
         lambda m: f"quantizer.{m[1]}.levels.{m[2]}.{CODEBOOK.get(m[3], m[3])}"),
    ]


def read_mimi(state: dict[str, Tensor], config: dict, pad_to: str = "stride") -> Tokenizer:
    """The tokenizer of a transformers ``MimiModel``'s tensors and ``config.json`` fields (strict)."""
    ours = mimi_config(config, state, pad_to)
    tensors = rename(merged(state), mimi_rules(ours))
    for group in ("semantic", "acoustic"):  # Mimi's projections have no bias
        for side in ("in", "out"):
            weight = tensors.get(f"quantizer.{group}.project_{side}.weight")
            if weight is not None:
                tensors[f"quantizer.{group}.project_{side}.bias"] = weight.new_zeros(weight.shape[0])
                tensors.origin[f"quantizer.{group}.project_{side}.bias"] = f"(zero: Mimi's {group} projection has none)"
    own = [r"quantizer\.\w+\.steps", r"quantizer\.\w+\.levels\.\d+\.initted"]
    return assemble(ours, tensors, own)
