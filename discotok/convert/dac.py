"""``dac``: Descript Audio Codec checkpoints (descript-audio-codec 1.0; 16, 24 and 44.1 kHz).

SOURCE is the ``.pth`` file the publisher distributes (``DAC.save``): ``{"state_dict": ...,
"metadata": {"kwargs": {encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates,
n_codebooks, codebook_size, codebook_dim, sample_rate, ...}}}``. The architecture is our
``audio`` encoder and decoder with Snake activations, residual units of dilations 1, 3, 9 and
kernel 7 at full width, no sequence model, DAC's transposed-convolution cropping and a tanh
output, and an ``rvq`` of ``n_codebooks`` levels with factorised codes: per level a projection to
``codebook_dim``, a cosine search over the l2-normalised codebook and the raw code as output.

Differences from the reference, by design: the decoder's output is zero-padded to
``frames * hop`` samples (DAC's 16 and 24 kHz models, whose ratios include a 5, give 8 samples
fewer); padded batches give each item what it gets alone (DAC's own batches do not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from discotok.convert.base import (
    ConvertError, Converter, Renamed, apply_rules, assemble, fold_weight_norm, load_pickle, rename, split_weight_norm,
)
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

DILATIONS = [1, 3, 9]
KWARGS = ("encoder_dim", "encoder_rates", "decoder_dim", "decoder_rates", "n_codebooks", "codebook_size",
          "codebook_dim", "sample_rate")


def dac_parts(encoder_dim: int, encoder_rates: list[int], latent_dim: int, decoder_dim: int,
              decoder_rates: list[int]) -> tuple[dict, dict]:
    """The ``audio`` encoder's and decoder's keyword arguments of DAC's encoder and decoder of these sizes (rates in
    DAC's order, the encoder's first first); the decoder without DAC's cropping and tanh (X-Codec's)."""
    units = {"dilations": DILATIONS, "residual_kernel_size": 7, "compress": 1, "activation": "snake", "sequence": "none",
             "kernel_size": 7, "causal": False}
    encoder = {"latent_dim": latent_dim, "channels": encoder_dim, "ratios": list(encoder_rates)[::-1],
               "last_kernel_size": 3, **units}
    decoder = {"latent_dim": latent_dim, "channels": decoder_dim // 2 ** len(decoder_rates), "ratios": list(decoder_rates),
               "last_kernel_size": 7, **units}
    return encoder, decoder


def dac_config(kwargs: dict) -> dict:
    """Our tokenizer config for a DAC of these constructor arguments."""
    encoder_rates, decoder_rates = list(kwargs["encoder_rates"]), list(kwargs["decoder_rates"])
    latent_dim = kwargs.get("latent_dim") or kwargs["encoder_dim"] * 2 ** len(encoder_rates)
    codebook_dim = kwargs["codebook_dim"]
    if isinstance(codebook_dim, (list, tuple)):
        if len(set(codebook_dim)) != 1:
            raise ConvertError(f"codebook_dim differs between levels ({codebook_dim}); one size for all is supported")
        codebook_dim = codebook_dim[0]
    encoder, decoder = dac_parts(kwargs["encoder_dim"], encoder_rates, latent_dim, kwargs["decoder_dim"], decoder_rates)
    encoder = {"name": "audio", "in_channels": 1, **encoder}
    decoder = {"name": "audio", "out_channels": 1, **decoder, "upsample_crop": "half_stride", "final_activation": "tanh"}
    quantizer = {"name": "rvq", "dim": latent_dim, "depth": kwargs["n_codebooks"], "codebook_size": kwargs["codebook_size"],
                 "level_dim": codebook_dim, "cosine": True, "raw_codes": True, "ema": False, "kmeans_init": False,
                 "quantizer_dropout": 0.5, "commitment_weight": 0.25, "codebook_weight": 1.0}
    return tokenizer_config(encoder, quantizer, decoder, modality="audio", sample_rate=int(kwargs["sample_rate"]),
                            channels=1, metadata={"converted_from": "dac", "dac_kwargs": {k: kwargs[k] for k in KWARGS}})


UNIT_LAYERS = {"0": "act1", "1": "conv1.conv", "2": "act2", "3": "conv2.conv"}


def dac_rules(encoder_blocks: int, decoder_blocks: int) -> list[tuple[str, Callable[[re.Match], str]]]:
    """(pattern, our name of a match) for every tensor of a DAC (weight norm already renamed)."""
    n, m = encoder_blocks, decoder_blocks

    def stage(match: re.Match) -> int:
        return int(match.group(1)) - 1

    return [
        (r"encoder\.block\.0\.(.+)", lambda x: f"encoder.stem.conv.{x[1]}"),
        (r"encoder\.block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.(.+)",
         lambda x: f"encoder.stages.{stage(x)}.units.{x[2]}.{UNIT_LAYERS[x[3]]}.{x[4]}"),
        (r"encoder\.block\.(\d+)\.block\.3\.alpha", lambda x: f"encoder.stages.{stage(x)}.act.alpha"),
        (r"encoder\.block\.(\d+)\.block\.4\.(.+)", lambda x: f"encoder.stages.{stage(x)}.down.conv.{x[2]}"),
        (rf"encoder\.block\.{n + 1}\.alpha", lambda x: "encoder.act.alpha"),
        (rf"encoder\.block\.{n + 2}\.(.+)", lambda x: f"encoder.head.conv.{x[1]}"),
        (r"decoder\.model\.0\.(.+)", lambda x: f"decoder.stem.conv.{x[1]}"),
        (r"decoder\.model\.(\d+)\.block\.0\.alpha", lambda x: f"decoder.stages.{stage(x)}.act.alpha"),
        (r"decoder\.model\.(\d+)\.block\.1\.(.+)", lambda x: f"decoder.stages.{stage(x)}.up.conv.{x[2]}"),
        (r"decoder\.model\.(\d+)\.block\.([2-4])\.block\.([0-3])\.(.+)",
         lambda x: f"decoder.stages.{stage(x)}.units.{int(x[2]) - 2}.{UNIT_LAYERS[x[3]]}.{x[4]}"),
        (rf"decoder\.model\.{m + 1}\.alpha", lambda x: "decoder.act.alpha"),
        (rf"decoder\.model\.{m + 2}\.(.+)", lambda x: f"decoder.head.conv.{x[1]}"),
        (r"quantizer\.quantizers\.(\d+)\.codebook\.weight", lambda x: f"quantizer.levels.{x[1]}.codebook"),
        (r"quantizer\.quantizers\.(\d+)\.(in|out)_proj\.(.+)", lambda x: f"quantizer.levels.{x[1]}.project_{x[2]}.{x[3]}"),
    ]


def dac_original(state: dict[str, Tensor], encoder_blocks: int, decoder_blocks: int) -> dict[str, Tensor]:
    """transformers' DAC names -> the ``dac`` package's."""
    unit = {"snake1": "block.0", "conv1": "block.1", "snake2": "block.2", "conv2": "block.3"}
    rules = [
        (r"encoder\.conv1\.(.+)", lambda m: f"encoder.block.0.{m[1]}"),
        (r"encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.{unit[m[3]]}.{m[4]}"),
        (r"encoder\.block\.(\d+)\.snake1\.(.+)", lambda m: f"encoder.block.{int(m[1]) + 1}.block.3.{m[2]}"),
        (r"encoder\.block\.(\d+)\.conv1\.(.+)", lambda m: f"encoder.block.{int(m[1]) + 1}.block.4.{m[2]}"),
        (r"encoder\.snake1\.(.+)", lambda m: f"encoder.block.{encoder_blocks + 1}.{m[1]}"),
        (r"encoder\.conv2\.(.+)", lambda m: f"encoder.block.{encoder_blocks + 2}.{m[1]}"),
        (r"decoder\.conv1\.(.+)", lambda m: f"decoder.model.0.{m[1]}"),
        (r"decoder\.block\.(\d+)\.snake1\.(.+)", lambda m: f"decoder.model.{int(m[1]) + 1}.block.0.{m[2]}"),
        (r"decoder\.block\.(\d+)\.conv_t1\.(.+)", lambda m: f"decoder.model.{int(m[1]) + 1}.block.1.{m[2]}"),
        (r"decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
         lambda m: f"decoder.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.{unit[m[3]]}.{m[4]}"),
        (r"decoder\.snake1\.(.+)", lambda m: f"decoder.model.{decoder_blocks + 1}.{m[1]}"),
        (r"decoder\.conv2\.(.+)", lambda m: f"decoder.model.{decoder_blocks + 2}.{m[1]}"),
    ]
    return {apply_rules(name, rules): tensor for name, tensor in split_weight_norm(state).items()}


def rename_dac(state: dict[str, Tensor], encoder_blocks: int, decoder_blocks: int) -> Renamed:
    """DAC's tensors under our names; the quantizer's 1x1 weight-normed convolutions become linear layers."""
    return fold_projections(rename(state, dac_rules(encoder_blocks, decoder_blocks)))


def fold_projections(tensors: Renamed) -> Renamed:
    """The quantizer levels' weight-normed 1x1 convolutions (``project_in`` / ``project_out``, DAC and SNAC) as the
    plain weights of our linear layers."""
    for key in sorted({k.rsplit(".", 3)[0] for k in tensors if ".project_" in k and "parametrizations" in k}):
        g = tensors.pop(f"{key}.parametrizations.weight.original0", None)
        v = tensors.pop(f"{key}.parametrizations.weight.original1", None)
        if g is None or v is None:
            raise ConvertError(f"{key}: weight norm needs both weight_g and weight_v")
        tensors[f"{key}.weight"] = fold_weight_norm(g, v).squeeze(-1)
        tensors.origin[f"{key}.weight"] = tensors.origin.pop(f"{key}.parametrizations.weight.original1").removesuffix("_v")
        tensors.origin.pop(f"{key}.parametrizations.weight.original0")
    return tensors


@CONVERTERS.register("dac")
class DACConverter(Converter):
    """Descript Audio Codec ``.pth`` files (``DAC.save``)."""

    source_patterns = ("*.pth",)
    describe = "a DAC .pth file (descript-audio-codec's DAC.save: state_dict + metadata.kwargs)"

    def read(self, source: Path) -> Tokenizer:
        obj = load_pickle(source, self.describe)
        if not isinstance(obj, dict) or "state_dict" not in obj or "kwargs" not in obj.get("metadata", {}):
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ConvertError(f"{source}: not a DAC checkpoint: expected keys 'state_dict' and 'metadata' "
                               f"(with 'kwargs'), found {found}")
        kwargs = obj["metadata"]["kwargs"]
        absent = [k for k in KWARGS if k not in kwargs]
        if absent:
            raise ConvertError(f"{source}: DAC metadata lacks {absent} (has {sorted(kwargs)})")
        return read_dac({k.removeprefix("module."): v for k, v in obj["state_dict"].items()}, kwargs)


def read_dac(state: dict[str, Tensor], kwargs: dict) -> Tokenizer:
    """The tokenizer of a DAC's tensors (the ``dac`` package's names) and constructor arguments."""
    tensors = rename_dac(state, len(kwargs["encoder_rates"]), len(kwargs["decoder_rates"]))
    own = [r"quantizer\.steps", r"quantizer\.levels\.\d+\.(cluster_size|initted)"]
    return assemble(dac_config(kwargs), tensors, own)
