"""``open_magvit2``: Open-MAGVIT2's LFQ image tokenizers (TencentARC/SEED-Voken, ``src/Open_MAGVIT2``).

SOURCE is the Lightning checkpoint the publisher distributes (``imagenet_256_L.ckpt``, ``imagenet_128_L.ckpt``,
``pretrain256_262144.ckpt``, ``pretrain256_16384.ckpt``): ``{"state_dict": ..., ...}`` (or the state dict
itself), read with ``weights_only=True``. The architecture is read from the tensors: the ``magvit2`` encoder and
decoder (width, levels, residual blocks per level; latent channels) and an ``lfq`` of ``2 ** latent channels``
codes with Open-MAGVIT2's bit order (``bit_order="little"``: the first channel is the id's least significant
bit; codes ±1, no projections; the quantizer has no tensors). Open-MAGVIT2's LFQ maps an exact zero to -1,
ours to +1: only exact zeros could differ.

Weights: the published configs train with an EMA copy (``use_ema: True``), and the publisher's evaluation and
reconstruction scripts decode with it (``ema_scope``); so when the file holds the EMA copy
(``model_ema.<name without dots>``) the encoder and decoder take the EMA weights, and the training weights
of the same names are not used; without it, the training weights. Ignored by name, always: the loss
(``loss.*``: the discriminator and the perceptual network), the EMA copy of the loss and EMA's bookkeeping
(``model_ema.decay``, ``model_ema.num_updates``). The config's ``metadata`` records which weights were used
and how many tensors of each kind were left out. Any other tensor is an error (strict).

Images are in [-1, 1], as Open-MAGVIT2's data pipeline makes them (``x / 127.5 - 1``). The image size is not
in the file: the published tokenizers all give 16x16 tokens (256 px at factor 16, 128 px at factor 8), so
``image_size`` is 16 times the downsampling factor (any multiple of the factor encodes). Open-MAGVIT2's video
tokenizer (3-D convolutions) is refused.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, rename
from discotok.convert.lit_ema import lightning_state, select_weights
from discotok.convert.llamagen import RES, count
from discotok.quantizers.lfq import MAX_GROUP_BITS
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

TOKENS_PER_SIDE = 16


def lfq_groups(bits: int) -> int:
    """The fewest groups of at most ``MAX_GROUP_BITS`` bits that divide ``bits`` (our LFQ's batch entropy, for
    fine-tuning)."""
    return next(g for g in range(1, bits + 1) if bits % g == 0 and bits // g <= MAX_GROUP_BITS)


def open_magvit2_config(state: dict[str, Tensor]) -> dict:
    """Our tokenizer config read from Open-MAGVIT2's encoder and decoder tensors."""
    try:
        conv_in = state["encoder.conv_in.weight"]
        if conv_in.ndim != 4:
            raise ConvertError(f"encoder.conv_in.weight has shape {tuple(conv_in.shape)}: Open-MAGVIT2's video "
                               "tokenizer (3-D convolutions) is not converted, only its image tokenizers")
        channels, in_channels = conv_in.shape[:2]
        latent_dim = state["encoder.conv_out.weight"].shape[0]
        out_channels = state["decoder.conv_out.weight"].shape[0]
        levels = count(state, r"encoder\.down\.(\d+)\..+")
        blocks = count(state, r"encoder\.down\.0\.block\.(\d+)\..+")
        if not levels:
            raise KeyError("encoder.down.0.block.0.conv1.weight")
        mult = [state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // channels for i in range(levels)]
    except KeyError as err:
        raise ConvertError(f"not an Open-MAGVIT2 image tokenizer state dict: no tensor {err}") from None
    shape = {"latent_dim": int(latent_dim), "channels": int(channels), "channel_mult": mult, "num_res_blocks": blocks}
    encoder = {"name": "magvit2", "in_channels": int(in_channels), **shape}
    decoder = {"name": "magvit2", "out_channels": int(out_channels), **shape}
    bits = int(latent_dim)
    quantizer = {"name": "lfq", "dim": bits, "bits": bits, "groups": lfq_groups(bits), "entropy_weight": 0.1,
                 "diversity_gamma": 1.0, "temperature": 0.01, "commitment_weight": 0.25, "sphere": False,
                 "bit_order": "little"}
    size = TOKENS_PER_SIDE * 2 ** (levels - 1)
    return tokenizer_config(encoder, quantizer, decoder, image_size=[size, size],
                            metadata={"converted_from": "open_magvit2"})


def open_magvit2_rules(levels: int) -> list:
    """(pattern, our name of a match) for Open-MAGVIT2's encoder and decoder tensors (``levels`` resolutions;
    the decoder's ``up.i`` / ``adaptive.i`` are indexed by resolution, ours by the order they run in)."""
    res = r"(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)"
    return [
        (rf"encoder\.down\.(\d+)\.block\.(\d+)\.{res}", lambda m: f"encoder.down.{m[1]}.blocks.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"encoder\.down\.(\d+)\.downsample\.(weight|bias)", lambda m: f"encoder.down.{m[1]}.downsample.conv.{m[2]}"),
        (rf"(encoder|decoder)\.mid_block\.(\d+)\.{res}", lambda m: f"{m[1]}.mid.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (rf"decoder\.up\.(\d+)\.block\.(\d+)\.{res}",
         lambda m: f"decoder.up.{levels - 1 - int(m[1])}.blocks.{m[2]}.{RES[m[3]]}.{m[4]}"),
        (r"decoder\.up\.(\d+)\.upsample\.conv1\.(weight|bias)",
         lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"),
        (r"decoder\.adaptive\.(\d+)\.(gamma|beta)\.(weight|bias)",
         lambda m: f"decoder.up.{levels - 1 - int(m[1])}.norm.{m[2]}.{m[3]}"),
    ]


@CONVERTERS.register("open_magvit2")
class OpenMagvit2Converter(Converter):
    """Open-MAGVIT2 image tokenizer checkpoints (Lightning ``.ckpt`` with a ``state_dict``)."""

    source_patterns = ("imagenet_*_L.ckpt", "pretrain256_*.ckpt")
    describe = "an Open-MAGVIT2 checkpoint (a Lightning .ckpt with a 'state_dict')"

    def read(self, source: Path) -> Tokenizer:
        return read_open_magvit2(lightning_state(source, self.describe), source)


def read_open_magvit2(state: dict[str, Tensor], source: Path, ema: bool = True) -> Tokenizer:
    """The tokenizer of an Open-MAGVIT2 state dict (``ema=False``: the training weights even if an EMA copy is
    there)."""
    try:
        config = open_magvit2_config(state)
        model, used = select_weights(state, ("encoder.", "decoder."), ema)
        tensors = rename(model, open_magvit2_rules(len(config["encoder"]["channel_mult"])))
        config["metadata"].update(used)
        return assemble(config, tensors)
    except ConvertError as err:
        raise ConvertError(f"{source}: {err}") from None
