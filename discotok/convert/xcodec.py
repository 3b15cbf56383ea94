"""X-Codec (Ye et al. 2024) in transformers' layout (``XcodecModel``) -> the ``xcodec`` encoder and decoder and an
``rvq`` quantizer.

transformers saves X-Codec flat: ``acoustic_encoder.*`` / ``acoustic_decoder.*`` (transformers' DAC encoder and
decoder, renamed through the ``dac`` converter's names), ``semantic_model.*`` (a ``HubertModel``),
``encoder_semantic.*``, ``fc.*`` (encoder side), ``fc2.*`` (decoder side) and ``quantizer.quantizers.*.codebook``
(Euclidean codebooks ``embed`` with their EMA statistics ``embed_avg`` / ``cluster_size``, kept for fine-tuning).
Plain convolutions become our weight-normed ones (g = the norm of each output slice).

Left out, by design: the semantic decoder (``decoder_semantic.*``) and ``fc1``, which only serve X-Codec's training
loss (reconstructing HuBERT's features), and HuBERT's ``masked_spec_embed`` (SpecAugment, training only).
Fine-tuning a converted X-Codec trains it as an acoustic codec, without that loss.

Ids are (B, frames, depth), transformers' ``audio_codes`` transposed; depth k is transformers'
``bandwidth=k * log2(codebook_size) * frame_rate / 1000`` kbps. The sample rate is the config's
``sample_rate`` (16 kHz in the published models); HuBERT runs on the input at that rate, as in transformers.
"""

from __future__ import annotations

import math
import re

from torch import Tensor

from discotok.convert.base import ConvertError, Renamed, assemble, rename, split_weight_norm
from discotok.convert.dac import dac_original, dac_parts, dac_rules
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

HUBERT_FIXED = {"feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_pos_batch_norm": False,
                "feat_extract_activation": "gelu", "hidden_act": "gelu", "model_type": "hubert"}
IGNORED = r"decoder_semantic\..+|fc1\..+|semantic_model\.masked_spec_embed"
CODEBOOK = {"embed": "codebook", "embed_avg": "embed_sum", "cluster_size": "cluster_size"}


def check_fixed(what: str, config: dict, fixed: dict) -> None:
    """``ConvertError`` unless ``config`` has ``fixed``'s values (absent keys take them)."""
    wrong = {k: config.get(k) for k, v in fixed.items() if config.get(k, v) != v}
    if wrong:
        raise ConvertError(f"an X-Codec with {what} {wrong} is not converted (supported: {fixed})")


def hubert_kwargs(config: dict) -> dict:
    """``discotok.nn.hubert.Hubert``'s arguments from a transformers ``HubertConfig``'s fields."""
    check_fixed("semantic_model_config", config, HUBERT_FIXED)
    return {"dim": int(config.get("hidden_size", 768)), "layers": int(config.get("num_hidden_layers", 12)),
            "heads": int(config.get("num_attention_heads", 12)), "mlp_dim": int(config.get("intermediate_size", 3072)),
            "conv_channels": list(config.get("conv_dim", [512] * 7)),
            "conv_kernels": list(config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])),
            "conv_strides": list(config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])),
            "conv_bias": bool(config.get("conv_bias", False)),
            "projection_norm": bool(config.get("feat_proj_layer_norm", True)),
            "position_kernel": int(config.get("num_conv_pos_embeddings", 128)),
            "position_groups": int(config.get("num_conv_pos_embedding_groups", 16)),
            "norm_eps": float(config.get("layer_norm_eps", 1e-5))}


def xcodec_config(config: dict) -> dict:
    """Our tokenizer config from a transformers ``XcodecConfig``'s fields (sub-configs as saved)."""
    acoustic, semantic = config.get("acoustic_model_config") or {}, config.get("semantic_model_config") or {}
    if acoustic.get("model_type", "dac") != "dac":
        raise ConvertError(f"an X-Codec whose acoustic model is {acoustic.get('model_type')!r} is not converted "
                           "(DAC's is)")
    strides = list(config.get("strides", [1, 1]))
    if any(int(s) != 1 for s in strides):
        raise ConvertError(f"an X-Codec with semantic strides {strides} is not converted (stride 1 throughout)")
    down = list(acoustic.get("downsampling_ratios", [8, 5, 4, 2]))
    up = list(acoustic.get("upsampling_ratios", [8, 5, 4, 2]))
    latent = int(acoustic.get("hidden_size", 256))
    encoder, decoder = dac_parts(int(acoustic.get("encoder_hidden_size", 64)), down, latent,
                                 int(acoustic.get("decoder_hidden_size", 1024)), up)
    hubert = hubert_kwargs(semantic)
    dim = latent + hubert["dim"]
    code_dim = int(config.get("codebook_dim") or dim)
    if code_dim != dim:
        raise ConvertError(f"codebook_dim {code_dim} differs from the code space's {dim} (acoustic + semantic hidden "
                           "sizes); X-Codec's codebooks have no projections")
    sample_rate, hop = int(config.get("sample_rate", 16_000)), math.prod(down)
    size = int(config.get("codebook_size", 1024))
    bandwidths = list(config.get("target_bandwidths", [0.5, 1, 1.5, 2, 4]))
    depth = int(1000 * bandwidths[-1] // (math.ceil(sample_rate / hop) * math.ceil(math.log2(size))))
    quantizer = {"name": "rvq", "dim": dim, "depth": depth, "codebook_size": size, "ema": True, "decay": 0.99,
                 "kmeans_init": False, "commitment_weight": 1.0, "quantizer_dropout": 0.0}
    semantic_convs = {"kernel_size": int(config.get("kernel_size", 3)),
                      "channel_ratios": list(config.get("channel_ratios", [1, 1])),
                      "block_dilations": list(config.get("block_dilations", [1, 1])),
                      "unit_kernel_size": int(config.get("unit_kernel_size", 3))}
    return tokenizer_config({"name": "xcodec", "acoustic": encoder, "hubert": hubert, "dim": dim, **semantic_convs},
                            quantizer, {"name": "xcodec", "acoustic": decoder, "dim": dim}, modality="audio",
                            sample_rate=sample_rate, channels=1,
                            metadata={"converted_from": "transformers XcodecModel", "target_bandwidths": bandwidths})


def acoustic_tensors(state: dict[str, Tensor], encoder_blocks: int, decoder_blocks: int) -> Renamed:
    """transformers' DAC encoder / decoder tensors of X-Codec under our ``encoder.acoustic.*`` /
    ``decoder.acoustic.*``."""
    theirs = {k.removeprefix("acoustic_"): v for k, v in state.items()}
    renamed = rename(dac_original(theirs, encoder_blocks, decoder_blocks), dac_rules(encoder_blocks, decoder_blocks))
    out = Renamed()
    for name, tensor in renamed.items():
        side, rest = name.split(".", 1)
        ours = f"{side}.acoustic.{rest}" if side in ("encoder", "decoder") else name
        out[ours] = tensor
        out.origin[ours] = "acoustic_" + renamed.origin[name]
    return out


def semantic_rules() -> list:
    """(pattern, our name of a match) for X-Codec's HuBERT, semantic encoder, ``fc``, ``fc2`` and codebooks."""
    hubert = "encoder.semantic"
    return [
        (r"semantic_model\.feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)",
         lambda m: f"{hubert}.features.convs.{m[1]}.{m[2]}"),
        (r"semantic_model\.feature_extractor\.conv_layers\.0\.layer_norm\.(\w+)",
         lambda m: f"{hubert}.features.norm.{m[1]}"),
        (r"semantic_model\.feature_projection\.layer_norm\.(\w+)", lambda m: f"{hubert}.projection_norm.{m[1]}"),
        (r"semantic_model\.feature_projection\.projection\.(\w+)", lambda m: f"{hubert}.projection.{m[1]}"),
        (r"semantic_model\.encoder\.pos_conv_embed\.conv\.(.+)", lambda m: f"{hubert}.position.conv.{m[1]}"),
        (r"semantic_model\.encoder\.layer_norm\.(\w+)", lambda m: f"{hubert}.norm.{m[1]}"),
        (r"semantic_model\.encoder\.layers\.(\d+)\.(?:feed_forward\.)?(.+)",
         lambda m: f"{hubert}.layers.{m[1]}.{m[2]}"),
        (r"encoder_semantic\.conv\.(.+)", lambda m: f"encoder.semantic_encoder.stem.conv.{m[1]}"),
        (r"encoder_semantic\.conv_blocks\.(\d+)\.res_units\.(\d+)\.(conv[12])\.(.+)",
         lambda m: f"encoder.semantic_encoder.blocks.{m[1]}.units.{m[2]}.{m[3]}.conv.{m[4]}"),
        (r"encoder_semantic\.conv_blocks\.(\d+)\.conv\.(.+)",
         lambda m: f"encoder.semantic_encoder.blocks.{m[1]}.conv.conv.{m[2]}"),
        (r"fc\.(\w+)", lambda m: f"encoder.fc.{m[1]}"),
        (r"fc2\.(\w+)", lambda m: f"decoder.fc.{m[1]}"),
        (r"quantizer\.quantizers\.(\d+)\.codebook\.(embed|embed_avg|cluster_size)",
         lambda m: f"quantizer.levels.{m[1]}.{CODEBOOK[m[2]]}"),
    ]


def read_xcodec(state: dict[str, Tensor], config: dict) -> Tokenizer:
    """The tokenizer of a transformers ``XcodecModel``'s tensors and ``config.json`` fields (strict)."""
    ours = xcodec_config(config)
    for key in [k for k in state if re.fullmatch(r"quantizer\.quantizers\.\d+\.codebook\.inited", k)]:
        if not bool((state[key] == 1).all()):
            raise ConvertError(f"{key}: the codebook is not initialised (k-means never ran)")
    kept = {k: v for k, v in state.items() if not re.fullmatch(IGNORED, k) and not k.endswith(".codebook.inited")}
    acoustic = {k: v for k, v in kept.items() if k.startswith(("acoustic_encoder.", "acoustic_decoder."))}
    rest = {k: v for k, v in kept.items() if k not in acoustic}
    semantic_convs = split_weight_norm({k: v for k, v in rest.items() if k.startswith("encoder_semantic.")})
    tensors = acoustic_tensors(acoustic, len(ours["encoder"]["acoustic"]["ratios"]),
                               len(ours["decoder"]["acoustic"]["ratios"]))
    others = rename({**{k: v for k, v in rest.items() if not k.startswith("encoder_semantic.")}, **semantic_convs},
                    semantic_rules())
    tensors.update(others)
    tensors.origin.update(others.origin)
    return assemble(ours, tensors, [r"quantizer\.steps", r"quantizer\.levels\.\d+\.initted"])
