"""``snac``: SNAC, the multi-scale neural audio codec (``snac`` 1.2.1; hubertsiuzdak/snac_24khz, _32khz, _44khz).

SOURCE is what the publisher distributes on the hub: a directory (or its ``config.json`` or
``pytorch_model.bin``) with ``config.json``, the ``SNAC`` constructor's arguments (missing ones
take the constructor's defaults, as ``SNAC.from_config``), and ``pytorch_model.bin``, a state dict
read with ``torch.load(weights_only=True)``. The architecture is our ``audio`` encoder and decoder
with Snake activations, residual units of dilations 1, 3, 9 and kernel 7, SNAC's depthwise
convolutions, windowed local attention (``attn_window_size``) and the decoder's noise blocks, and
an ``rvq`` with factorised codes (as DAC's) whose levels run at 1 / ``vq_strides`` of the frame
rate (``discotok.quantizers.multirate``).

Ids: one token position per ``max(vq_strides)`` frames (2048 samples at 24 kHz, 3072 at 32 kHz),
each holding its levels' codes level by level in time order: (B, N, 7) for strides [4, 2, 1],
(B, N, 15) for [8, 4, 2, 1]. ``split_rates(ids, strides)`` gives SNAC's list of codes.
Lengths: an input is zero-padded to a multiple of hop * lcm(max stride, attention window), as SNAC
pads it (24 kHz: 2048 samples, 32 kHz: 12288), and decodes to that many samples
(``Tokenizer.decode(ids, size=...)`` cuts); in a padded batch with ``lengths`` each item gets the
ids it gets alone. The decoder's noise is drawn from torch's global generator, in eval mode too:
seed it right before decoding for a reproducible waveform.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, Renamed, assemble, json_object, model_config, rename
from discotok.convert.dac import UNIT_LAYERS, fold_projections
from discotok.convert.hf_transformers import read_weights
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

DILATIONS = [1, 3, 9]
HEAD_DIM = 64  # SNAC's LocalMHA: heads = dim // 64
DEFAULTS = {"sampling_rate": 44100, "encoder_dim": 64, "encoder_rates": [3, 3, 7, 7], "latent_dim": None,
            "decoder_dim": 1536, "decoder_rates": [7, 7, 3, 3], "attn_window_size": 32, "codebook_size": 4096,
            "codebook_dim": 8, "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True}
ATTENTION = {"norm.weight": "norm.weight", "norm.bias": "norm.bias", "to_qkv.weight": "to_qkv.weight",
             "to_out.weight": "to_out.weight", "rel_pos.inv_freq": "inv_freq"}


def snac_kwargs(config: dict, where: str) -> dict:
    """The constructor's arguments of a SNAC ``config.json``, defaults filled in; ``ConvertError`` for unknown keys."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ConvertError(f"{where}: not a SNAC config: unknown keys {unknown} (SNAC takes {sorted(DEFAULTS)})")
    return DEFAULTS | config


def snac_config(kwargs: dict) -> dict:
    """Our tokenizer config for a SNAC of these constructor arguments."""
    encoder_rates, decoder_rates = list(kwargs["encoder_rates"]), list(kwargs["decoder_rates"])
    strides = list(kwargs["vq_strides"])
    latent = kwargs["encoder_dim"] * 2 ** len(encoder_rates)
    if kwargs["latent_dim"] not in (None, latent):
        raise ConvertError(f"latent_dim {kwargs['latent_dim']} differs from the encoder's width {latent} "
                           "(encoder_dim * 2^len(encoder_rates)); SNAC itself cannot run such a model")
    if math.prod(encoder_rates) != math.prod(decoder_rates):
        raise ConvertError(f"encoder_rates {encoder_rates} and decoder_rates {decoder_rates} give different hops")
    if kwargs["decoder_dim"] % 2 ** len(decoder_rates):
        raise ConvertError(f"decoder_dim {kwargs['decoder_dim']} does not halve {len(decoder_rates)} times")
    window = kwargs["attn_window_size"]
    if window and (latent % HEAD_DIM or kwargs["decoder_dim"] % HEAD_DIM):
        raise ConvertError(f"SNAC's attention needs widths that are multiples of {HEAD_DIM}: "
                           f"encoder {latent}, decoder {kwargs['decoder_dim']}")
    common = {"dilations": DILATIONS, "residual_kernel_size": 7, "compress": 1, "activation": "snake", "kernel_size": 7,
              "last_kernel_size": 7, "causal": False, "depthwise": bool(kwargs["depthwise"]),
              "sequence": "local_attention" if window else "none", "sequence_layers": 1,
              "attention_window": window or 32,
              "frames_per_token": max(strides)}
    encoder = {"name": "audio", "latent_dim": latent, "in_channels": 1, "channels": kwargs["encoder_dim"],
               "ratios": encoder_rates[::-1], "head_activation": False, "sequence_heads": max(1, latent // HEAD_DIM),
               **common}
    decoder = {"name": "audio", "latent_dim": latent, "out_channels": 1,
               "channels": kwargs["decoder_dim"] // 2 ** len(decoder_rates), "ratios": decoder_rates,
               "final_activation": "tanh", "noise": bool(kwargs["noise"]),
               "sequence_heads": max(1, kwargs["decoder_dim"] // HEAD_DIM), **common}
    quantizer = {"name": "rvq", "dim": max(strides) * latent, "depth": len(strides), "strides": strides,
                 "codebook_size": kwargs["codebook_size"], "level_dim": kwargs["codebook_dim"], "cosine": True,
                 "raw_codes": True, "ema": False, "kmeans_init": False, "quantizer_dropout": 0.0,
                 "commitment_weight": 0.25, "codebook_weight": 1.0}
    return tokenizer_config(encoder, quantizer, decoder, modality="audio", sample_rate=int(kwargs["sampling_rate"]),
                            channels=1, metadata={"converted_from": "snac", "snac_config": kwargs})


def snac_rules(kwargs: dict) -> list[tuple[str, Callable[[re.Match], str]]]:
    """(pattern, our name of a match) for every tensor of a SNAC of these constructor arguments."""
    n, m = len(kwargs["encoder_rates"]), len(kwargs["decoder_rates"])
    attention = 1 if kwargs["attn_window_size"] else 0
    stem = 2 if kwargs["depthwise"] else 1  # decoder.model layers before the attention
    first = stem + attention  # the first decoder block
    units = 3 if kwargs["noise"] else 2  # the first residual unit inside a decoder block
    rules = [
        (r"encoder\.block\.0\.(.+)", lambda x: f"encoder.stem.conv.{x[1]}"),
        (rf"encoder\.block\.{n + 1}\.({'|'.join(map(re.escape, ATTENTION))})",
         lambda x: f"encoder.sequence.net.{ATTENTION[x[1]]}"),
        (rf"encoder\.block\.{n + 1 + attention}\.(.+)", lambda x: f"encoder.head.conv.{x[1]}"),
        (r"encoder\.block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.(.+)",
         lambda x: f"encoder.stages.{int(x[1]) - 1}.units.{x[2]}.{UNIT_LAYERS[x[3]]}.{x[4]}"),
        (r"encoder\.block\.(\d+)\.block\.3\.alpha", lambda x: f"encoder.stages.{int(x[1]) - 1}.act.alpha"),
        (r"encoder\.block\.(\d+)\.block\.4\.(.+)", lambda x: f"encoder.stages.{int(x[1]) - 1}.down.conv.{x[2]}"),
        (rf"decoder\.model\.{stem}\.({'|'.join(map(re.escape, ATTENTION))})",
         lambda x: f"decoder.sequence.net.{ATTENTION[x[1]]}"),
        (r"decoder\.model\.(\d+)\.block\.0\.alpha", lambda x: f"decoder.stages.{int(x[1]) - first}.act.alpha"),
        (r"decoder\.model\.(\d+)\.block\.1\.(.+)", lambda x: f"decoder.stages.{int(x[1]) - first}.up.conv.{x[2]}"),
        (r"decoder\.model\.(\d+)\.block\.2\.linear\.(.+)",
         lambda x: f"decoder.stages.{int(x[1]) - first}.noise.conv.conv.{x[2]}"),
        (r"decoder\.model\.(\d+)\.block\.(\d)\.block\.([0-3])\.(.+)",
         lambda x: f"decoder.stages.{int(x[1]) - first}.units.{int(x[2]) - units}.{UNIT_LAYERS[x[3]]}.{x[4]}"),
        (rf"decoder\.model\.{first + m}\.alpha", lambda x: "decoder.act.alpha"),
        (rf"decoder\.model\.{first + m + 1}\.(.+)", lambda x: f"decoder.head.conv.{x[1]}"),
        (r"quantizer\.quantizers\.(\d+)\.codebook\.weight", lambda x: f"quantizer.levels.{x[1]}.codebook"),
        (r"quantizer\.quantizers\.(\d+)\.(in|out)_proj\.(.+)",
         lambda x: f"quantizer.levels.{x[1]}.project_{x[2]}.{x[3]}"),
    ]
    if kwargs["depthwise"]:
        return [(r"decoder\.model\.0\.(.+)", lambda x: f"decoder.stem.depthwise.conv.{x[1]}"),
                (r"decoder\.model\.1\.(.+)", lambda x: f"decoder.stem.pointwise.conv.{x[1]}"), *rules]
    return [(r"decoder\.model\.0\.(.+)", lambda x: f"decoder.stem.conv.{x[1]}"), *rules]


def rename_snac(state: dict[str, Tensor], kwargs: dict) -> Renamed:
    """SNAC's tensors under our names; the quantizer's weight-normed 1x1 convolutions become linear layers."""
    return fold_projections(rename(state, snac_rules(kwargs)))


@CONVERTERS.register("snac")
class SNACConverter(Converter):
    """SNAC's hub directories: ``config.json`` (the constructor's arguments) + ``pytorch_model.bin``."""

    source_patterns = ("config.json",)
    describe = "a SNAC directory (config.json with the SNAC constructor's arguments + pytorch_model.bin)"

    @classmethod
    def recognises(cls, path: Path) -> bool:
        config = json_object(path / "config.json" if path.is_dir() else path)
        return config is not None and "vq_strides" in config and "model_type" not in config

    def read(self, source: Path) -> Tokenizer:
        folder, config = model_config(source, self.describe)
        kwargs = snac_kwargs(config, str(folder / "config.json"))
        state = read_weights(folder, "SNAC pytorch_model.bin (a state dict)")
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ConvertError(f"{folder}: the weights are not a state dict of tensors; expected {self.describe}")
        return read_snac(state, kwargs)


def read_snac(state: dict[str, Tensor], kwargs: dict) -> Tokenizer:
    """The tokenizer of a SNAC's tensors (the ``snac`` package's names) and constructor arguments."""
    own = [r"quantizer\.steps", r"quantizer\.levels\.\d+\.(cluster_size|initted)"]
    return assemble(snac_config(kwargs), rename_snac(state, kwargs), own)
