"""``mimi``: Kyutai's own Mimi checkpoint (moshi's ``MimiModel``, moshi 0.2.13), as ``kyutai/moshiko-pytorch-bf16``
serves it (``tokenizer-e351c8d8-checkpoint125.safetensors``).

The file carries no config: the SEANet's widths, kernels, ratios and residual units, the transformers'
depth and width and the quantizer's groups, levels and sizes are read from the tensors; what they do
not say is moshi's published Mimi (``loaders._mimi_config``): 8 heads, a context of 250 frames, RoPE
period 10000, dilation base 2, 24 kHz. Moshi's names differ from transformers' in every tensor but map
one to one (its fused ``in_projs.0`` is q, k and v with RoPE's pairs interleaved, which transformers'
layout stores as halves); the tensors are renamed to transformers' layout and converted as
``discotok.convert.mimi`` does, with one difference moshi makes: an item of L samples is zero-padded to
whole hops (1920 samples) before it is encoded, where transformers extends each convolution's input.
"""

from __future__ import annotations

import re
from pathlib import Path

from einops import rearrange
from torch import Tensor

from discotok.convert.base import ConvertError, Converter, apply_rules
from discotok.convert.mimi import read_mimi
from discotok.registry import CONVERTERS
from discotok.tokenizers.tokenizer import Tokenizer

PUBLISHED = {"num_attention_heads": 8, "sliding_window": 250, "rope_parameters": {"rope_theta": 10_000.0},
             "dilation_growth_rate": 2, "sampling_rate": 24_000, "norm_eps": 1e-5}
BLOCK = {"norm1": "input_layernorm", "norm2": "post_attention_layernorm", "linear1": "mlp.fc1", "linear2": "mlp.fc2",
         "layer_scale_1": "self_attn_layer_scale", "layer_scale_2": "mlp_layer_scale",
         "self_attn.out_projs.0": "self_attn.o_proj"}
IN_PROJ = r"(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.self_attn\.in_projs\.0\.weight"
RULES = [
    (r"(encoder|decoder)\.model\.(\d+)\.((?:block\.\d+\.)?)conv\.conv\.(weight|bias)",
     lambda m: f"{m[1]}.layers.{m[2]}.{m[3]}conv.{m[4]}"),
    (r"decoder\.model\.(\d+)\.convtr\.convtr\.(weight|bias)", lambda m: f"decoder.layers.{m[1]}.conv.{m[2]}"),
    (r"(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\.(\w+(?:\.\w+\.0)?)\.(weight|bias|scale)",
     lambda m: f"{m[1]}_transformer.layers.{m[2]}.{BLOCK.get(m[3], m[3])}.{m[4]}"),
    (r"downsample\.conv\.conv\.conv\.weight", lambda m: "downsample.conv.weight"),
    (r"upsample\.convtr\.convtr\.convtr\.weight", lambda m: "upsample.conv.weight"),
    (r"quantizer\.rvq_(first|rest)\.((?:in|out)put_proj\.weight)",
     lambda m: f"quantizer.{'semantic' if m[1] == 'first' else 'acoustic'}_residual_vector_quantizer.{m[2]}"),
    (r"quantizer\.rvq_(first|rest)\.vq\.layers\.(\d+)\._codebook\.(embedding_sum|cluster_usage|_initialized)",
     lambda m: f"quantizer.{'semantic' if m[1] == 'first' else 'acoustic'}_residual_vector_quantizer.layers.{m[2]}"
               f".codebook.{ {'embedding_sum': 'embed_sum', '_initialized': 'initialized'}.get(m[3], m[3]) }"),
]


def shape(state: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConvertError(f"not a moshi Mimi state dict: no tensor {key!r}")
    return tuple(state[key].shape)


def count(state: dict[str, Tensor], pattern: str) -> int:
    """How many distinct first groups of ``pattern`` the tensor names hold."""
    return len({m[1] for k in state if (m := re.fullmatch(pattern, k))})


def moshi_config(state: dict[str, Tensor]) -> dict:
    """transformers' ``MimiConfig`` fields of a moshi Mimi, read from its tensors (and ``PUBLISHED``)."""
    filters, channels, kernel = shape(state, "encoder.model.0.conv.conv.weight")
    units = 0
    while f"encoder.model.{1 + units}.block.1.conv.conv.weight" in state:
        units += 1
    step, ratios = units + 2, []
    while f"encoder.model.{1 + len(ratios) * step}.block.1.conv.conv.weight" in state:
        ratios.append(shape(state, f"encoder.model.{len(ratios) * step + units + 2}.conv.conv.weight")[-1] // 2)
    if not units or not ratios:
        raise ConvertError("not a moshi Mimi state dict: no SEANet residual units under encoder.model.*")
    hidden, _, residual_kernel = shape(state, "encoder.model.1.block.1.conv.conv.weight")
    dim, _, last_kernel = shape(state, f"encoder.model.{2 + len(ratios) * step}.conv.conv.weight")
    codebook_size, codebook_dim = shape(state, "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum")
    semantic = count(state, r"quantizer\.rvq_first\.vq\.layers\.(\d+)\._codebook\.embedding_sum")
    acoustic = count(state, r"quantizer\.rvq_rest\.vq\.layers\.(\d+)\._codebook\.embedding_sum")
    return {**PUBLISHED, "audio_channels": channels, "hidden_size": dim, "num_filters": filters,
            "num_residual_layers": units, "upsampling_ratios": ratios[::-1], "kernel_size": kernel,
            "last_kernel_size": last_kernel, "residual_kernel_size": residual_kernel, "compress": filters // hidden,
            "num_hidden_layers": count(state, r"encoder_transformer\.transformer\.layers\.(\d+)\..+"),
            "intermediate_size": shape(state, "encoder_transformer.transformer.layers.0.linear1.weight")[0],
            "codebook_size": codebook_size, "codebook_dim": codebook_dim, "num_quantizers": semantic + acoustic,
            "num_semantic_quantizers": semantic,
            "vector_quantization_hidden_dimension": shape(state, "quantizer.rvq_first.input_proj.weight")[0],
            "layer_scale_initial_scale": 0.01}


def halves(weight: Tensor, heads: int) -> Tensor:
    """Rows of q or k projections with each head's RoPE pairs interleaved (moshi) -> as halves (transformers)."""
    return rearrange(weight, "(h d two) i -> (h two d) i", h=heads, two=2)


def as_transformers(state: dict[str, Tensor], heads: int) -> dict[str, Tensor]:
    """moshi's Mimi tensors under transformers' names (``in_projs.0`` split into q, k, v as halves)."""
    out = {}
    for name, tensor in state.items():
        if m := re.fullmatch(IN_PROJ, name):
            q, k, v = tensor.chunk(3)
            prefix = f"{m[1]}_transformer.layers.{m[2]}.self_attn"
            out |= {f"{prefix}.q_proj.weight": halves(q, heads), f"{prefix}.k_proj.weight": halves(k, heads),
                    f"{prefix}.v_proj.weight": v}
        else:
            out[apply_rules(name, RULES)] = tensor
    return out


@CONVERTERS.register("mimi")
class MimiConverter(Converter):
    """moshi's Mimi safetensors (Kyutai's own layout)."""

    source_patterns = ("tokenizer-*.safetensors",)
    describe = "moshi's Mimi safetensors (tokenizer-e351c8d8-checkpoint125.safetensors)"

    def read(self, source: Path) -> Tokenizer:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not source.is_file():
            raise ConvertError(f"{source}: no such file (expected {self.describe})")
        try:
            state = load_file(str(source))
        except (SafetensorError, OSError) as err:
            raise ConvertError(f"{source}: not a readable safetensors file ({err})") from None
        try:
            config = moshi_config(state)
            return read_mimi(as_transformers(state, config["num_attention_heads"]), config, pad_to="hop")
        except ConvertError as err:
            raise ConvertError(f"{source}: {err}") from None
