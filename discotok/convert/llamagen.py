"""``llamagen``: LlamaGen's VQ tokenizers (VQ-16, VQ-8; also used by Janus and RobusTok).

SOURCE is the checkpoint the publisher distributes (``vq_ds16_c2i.pt``): ``{"model": state_dict, ...}`` (or
the state dict itself), read with ``weights_only=True``. The architecture is read from the tensors: the
``taming`` encoder and decoder (widths, levels, residual blocks per level), the latent width, the codebook
(size x 8) with its 1x1 projections, the levels that have attention (LlamaGen's: the lowest resolution); LlamaGen's codebooks are l2-normalised (``codebook_l2_norm``), so the
quantizer is a cosine ``vq`` whose codes are the normalised ones. The image size is not in the file: 256,
as published (any multiple of the downsampling factor encodes).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, apply_rules, assemble, count, load_pickle, rename
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_SIZE = 256
RES = {"norm1": "body.0", "conv1": "body.2", "norm2": "body.3", "conv2": "body.5", "nin_shortcut": "skip"}
MID = {"block_1": "0", "attn_1": "1", "block_2": "2"}


def attention_levels(state: dict[str, Tensor], part: str, levels: int) -> list[int]:
    """The levels (0 the highest resolution) whose blocks have attention in ``part`` (``encoder`` or ``decoder``,
    whose ``conv_blocks`` run from the lowest resolution)."""
    found = {int(m[1]) for k in state if (m := re.fullmatch(rf"{part}\.conv_blocks\.(\d+)\.attn\..+", k))}
    return sorted(i if part == "encoder" else levels - 1 - i for i in found)


def llamagen_config(state: dict[str, Tensor], l2_norm: bool = True, image_size: int = IMAGE_SIZE,
                    dot_product: bool = False, converted_from: str = "llamagen") -> dict:
    """Our tokenizer config read from LlamaGen's tensors (an l2-normalised codebook unless ``l2_norm`` is False;
    ``dot_product``: the code of highest inner product, IBQ's search). The 1x1 convolutions around the codebook
    are the quantizer's projections, also where their widths are equal."""
    try:
        channels, in_channels = state["encoder.conv_in.weight"].shape[:2]
        latent_dim = state["encoder.conv_out.weight"].shape[0]
        codebook_size, code_dim = state["quantize.embedding.weight"].shape
    except KeyError as err:
        raise ConvertError(f"not a LlamaGen VQ state dict: no tensor {err}") from None
    levels = count(state, r"encoder\.conv_blocks\.(\d+)\..+")
    blocks = count(state, r"encoder\.conv_blocks\.0\.res\.(\d+)\..+")
    mult = [state[f"encoder.conv_blocks.{i}.res.0.conv2.weight"].shape[0] // channels for i in range(levels)]
    decoder_mult = [state[f"decoder.conv_blocks.{levels - 1 - i}.res.0.conv2.weight"].shape[0] // channels
                    for i in range(levels)]
    shape = {"channels": int(channels), "num_res_blocks": blocks}
    encoder = {"name": "taming", "latent_dim": int(latent_dim), "in_channels": int(in_channels), "channel_mult": mult,
               "attn_levels": attention_levels(state, "encoder", levels), **shape}
    decoder = {"name": "taming", "latent_dim": int(latent_dim), "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
               "channel_mult": decoder_mult, "attn_levels": attention_levels(state, "decoder", levels), **shape}
    quantizer = {"name": "vq", "dim": int(latent_dim), "codebook_size": int(codebook_size), "code_dim": int(code_dim),
                 "cosine": l2_norm, "ema": False, "kmeans_init": False, "commitment_weight": 0.25, "codebook_weight": 1.0,
                 "dot_product": dot_product, "projections": True}
    return tokenizer_config(encoder, quantizer, decoder, image_size=[image_size, image_size],
                            metadata={"converted_from": converted_from})


def llamagen_rules() -> list:
    """(pattern, our name of a match) for LlamaGen's tensors."""
    return [
        (r"(encoder|decoder)\.(.*)\.(res\.\d+|mid\.[02])\.(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)",
         lambda m: f"{m[1]}.{m[2]}.{m[3]}.{RES[m[4]]}.{m[5]}"),
        (r"(encoder|decoder)\.(mid\.[02])\.(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)",
         lambda m: f"{m[1]}.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"quant_conv\.(weight|bias)", lambda m: f"quantizer.project_in.{m[1]}"),
        (r"post_quant_conv\.(weight|bias)", lambda m: f"quantizer.project_out.{m[1]}"),
        (r"quantize\.embedding\.weight", lambda m: "quantizer.codebook"),
    ]


def taming_to_llamagen_rules(levels: int) -> list:
    """(pattern, LlamaGen's name) for taming-transformers' encoder and decoder names (``levels`` resolutions; the
    decoder's ``up.i`` is indexed by resolution, LlamaGen's ``conv_blocks`` by the order they run in)."""
    return [
        (r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", lambda m: f"encoder.conv_blocks.{m[1]}.res.{m[2]}.{m[3]}"),
        (r"encoder\.down\.(\d+)\.(attn\.\d+|downsample)\.(.+)", lambda m: f"encoder.conv_blocks.{m[1]}.{m[2]}.{m[3]}"),
        (r"(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.(.+)", lambda m: f"{m[1]}.mid.{MID[m[2]]}.{m[3]}"),
        (r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)",
         lambda m: f"decoder.conv_blocks.{levels - 1 - int(m[1])}.res.{m[2]}.{m[3]}"),
        (r"decoder\.up\.(\d+)\.(attn\.\d+|upsample)\.(.+)",
         lambda m: f"decoder.conv_blocks.{levels - 1 - int(m[1])}.{m[2]}.{m[3]}"),
    ]


def from_taming_names(model: dict[str, Tensor]) -> dict[str, Tensor]:
    """A VQGAN's tensors in taming-transformers' names (IBQ, Chameleon) under LlamaGen's; ``ConvertError`` naming
    encoder or decoder tensors that do not fit (a level outside the encoder's)."""
    rules = taming_to_llamagen_rules(count(model, r"encoder\.down\.(\d+)\..+"))
    renamed = {apply_rules(k, rules): v for k, v in model.items()}
    stray = sorted(k for k in renamed if re.search(r"\.(down|up)\.\d", k))
    if stray:
        raise ConvertError(f"tensors of the encoder or decoder that do not fit: {', '.join(stray[:8])}")
    return renamed


@CONVERTERS.register("llamagen")
class LlamaGenConverter(Converter):
    """LlamaGen VQ checkpoints (``{"model": state_dict}``)."""

    source_patterns = ("vq_*.pt",)
    describe = "a LlamaGen VQ checkpoint (.pt with a 'model' state dict)"

    def read(self, source: Path) -> Tokenizer:
        obj = load_pickle(source, self.describe)
        state = obj.get("model", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise ConvertError(f"{source}: not a LlamaGen VQ checkpoint: expected a 'model' state dict, found {found}")
        return read_llamagen(state, source)


def read_llamagen(state: dict[str, Tensor], source: Path, metadata: dict | None = None, extra: dict | None = None,
                  **architecture: object) -> Tokenizer:
    """The tokenizer of a VQGAN in LlamaGen's names; ``architecture``: ``llamagen_config``'s keyword arguments;
    ``metadata``: more for the config's; ``extra``: more top-level config keys (a publisher's ``preprocessing``)."""
    try:
        config = llamagen_config(state, **architecture)
    except ConvertError as err:
        raise ConvertError(f"{source}: {err}") from None
    config["metadata"].update(metadata or {})
    config.update(extra or {})
    state = {k: v for k, v in state.items() if k != "quantize.codebook_used"}
    tensors = rename(state, llamagen_rules())
    for key in ("quantizer.project_in.weight", "quantizer.project_out.weight"):
        if key in tensors:
            tensors[key] = tensors[key].flatten(1)
    return assemble(config, tensors, [r"quantizer\.(cluster_size|initted)"])
