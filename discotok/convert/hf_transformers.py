"""``transformers``: Hugging Face ``transformers`` layouts: EnCodec, DAC, Mimi, X-Codec and the VQ-VAEs of Janus,
Emu3 and Chameleon (``EncodecModel``, ``DacModel``, ``MimiModel``, ``XcodecModel``, ``JanusVQVAE``, ``Emu3VQVAE``,
``ChameleonVQVAE``).

SOURCE is a model directory as ``save_pretrained`` writes it and the hub serves it (``facebook/encodec_24khz``,
``descript/dac_44khz``): ``config.json`` (read as plain JSON; its ``model_type`` picks the architecture) and
``model.safetensors`` (or ``pytorch_model.bin``, read with ``weights_only=True``). The tensors are renamed to
the publisher's original layout and go through the ``encodec`` / ``dac`` / ``llamagen`` converters, so both
layouts of a model give the same discotok tokenizer (Janus's VQ-VAE is LlamaGen's VQGAN; transformers'
version searches its codebook by Euclidean distance, without LlamaGen's l2 normalisation). Emu3's MoVQ and
Chameleon's encode-only VQ-VAE are built directly (``discotok.convert.hf_emu3``, ``discotok.convert.hf_chameleon``),
Mimi's tensors map to the ``mimi`` encoder and decoder and the ``split_rvq`` quantizer directly
(``discotok.convert.mimi``), X-Codec's to the ``xcodec`` encoder and decoder and an ``rvq``
(``discotok.convert.xcodec``).
``transformers`` itself is never imported.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, json_object, load_pickle, model_config
from discotok.convert.dac import dac_original, read_dac
from discotok.convert.encodec import held_in_weight_norm, read_encodec
from discotok.convert.hf_chameleon import read_chameleon
from discotok.convert.hf_emu3 import read_emu3
from discotok.convert.llamagen import read_llamagen
from discotok.convert.mimi import read_mimi
from discotok.convert.xcodec import read_xcodec
from discotok.registry import CONVERTERS
from discotok.tokenizers.tokenizer import Tokenizer

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_weights(folder: Path, what: str = "a transformers pytorch_model.bin") -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors import SafetensorError
                from safetensors.torch import load_file

                try:
                    return load_file(str(path))
                except (SafetensorError, OSError) as err:
                    raise ConvertError(f"{path}: not a readable safetensors file ({err})") from None
            return load_pickle(path, what)
    raise ConvertError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})")


def encodec_original(state: dict[str, Tensor], stages: int) -> dict[str, Tensor]:
    """transformers' EnCodec names -> the ``encodec`` package's (weight norm as weight_g / weight_v; the 48 kHz
    family's group norms ``*.norm.*`` as ``*.conv.norm.*`` / ``*.convtr.norm.*``)."""
    out = {}
    transposed = {3 + 3 * i for i in range(stages)}
    for name, tensor in state.items():
        name = name.replace(".parametrizations.weight.original0", ".weight_g")
        name = name.replace(".parametrizations.weight.original1", ".weight_v")
        if m := re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.(.+)", name):
            name = f"quantizer.vq.layers.{m[1]}._codebook.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(lstm\..+)", name):
            name = f"{m[1]}.model.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.((?:block\.\d+\.|shortcut\.)?)(conv|norm)\.(.+)", name):
            conv = "convtr" if m[1] == "decoder" and int(m[2]) in transposed and not m[3] else "conv"
            name = f"{m[1]}.model.{m[2]}.{m[3]}{conv}.{conv if m[4] == 'conv' else 'norm'}.{m[5]}"
        out[name] = tensor
    return out


def encodec_segments(config: dict, folder: Path) -> dict:
    """The segments of an EnCodec config (``chunk_length_s``, ``overlap``, ``normalize``): ``{}`` for whole clips
    without scale (the 24 kHz models), else our config's ``segments`` (48 kHz: 1 s, 0.01, normalised)."""
    seconds, overlap, normalize = config.get("chunk_length_s"), config.get("overlap"), bool(config.get("normalize"))
    if seconds is None and not normalize:
        return {}
    if seconds is not None and overlap is None:
        raise ConvertError(f"{folder}: an EnCodec with chunk_length_s {seconds} and no overlap is not converted "
                           "(transformers gives it no chunk stride)")
    return {"seconds": seconds, "overlap": 0.0 if seconds is None else float(overlap), "normalize": normalize}


def janus_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' Janus VQ-VAE names -> LlamaGen's (the same VQGAN)."""
    out = {}
    for name, tensor in state.items():
        name = re.sub(r"^(encoder)\.down\.|^(decoder)\.up\.", lambda m: f"{m[1] or m[2]}.conv_blocks.", name)
        name = re.sub(r"\.block\.(\d+)\.", r".res.\1.", name)
        name = name.replace("mid.block_1.", "mid.0.").replace("mid.attn_1.", "mid.1.").replace("mid.block_2.", "mid.2.")
        out[name] = tensor
    return out


def check(config: dict, expected: dict, what: str) -> None:
    wrong = {k: config.get(k) for k, v in expected.items() if config.get(k, v) != v}
    if wrong:
        raise ConvertError(f"{what} with {wrong} is not converted (expected {dict((k, expected[k]) for k in wrong)})")


@CONVERTERS.register("transformers")
class TransformersConverter(Converter):
    """``transformers`` model directories of ``EncodecModel``, ``DacModel``, ``MimiModel``, ``XcodecModel`` and the
    Janus, Emu3 and Chameleon VQ-VAEs."""

    source_patterns = ("config.json",)
    describe = ("a transformers model directory (config.json + model.safetensors) of EncodecModel, DacModel, MimiModel, "
                "XcodecModel, JanusVQVAE, Emu3VQVAE or ChameleonVQVAE")

    @classmethod
    def recognises(cls, path: Path) -> bool:
        config = json_object(path)
        return config is not None and "model_type" in config

    def read(self, source: Path) -> Tokenizer:
        folder, config = model_config(source, self.describe)
        model_type = config.get("model_type")
        if model_type not in ("encodec", "dac", "mimi", "xcodec", "janus_vqgan", "emu3_vqgan", "chameleon_vqgan"):
            raise ConvertError(f"{folder}: model_type {model_type!r}; FORMAT transformers converts 'encodec', 'dac', "
                               "'mimi', 'xcodec', 'janus_vqgan', 'emu3_vqgan' and 'chameleon_vqgan' (a whole Emu3 "
                               "or Chameleon model directory is not converted: save its vqmodel alone)")
        if model_type == "emu3_vqgan":
            return read_emu3(read_weights(folder), config, folder)
        if model_type == "chameleon_vqgan":
            return read_chameleon(janus_original(read_weights(folder)), config, folder)
        if model_type == "janus_vqgan":
            check(config, {"double_latent": False}, "a Janus VQ-VAE")
            size = int(config.get("num_patches", 32)) * 2 ** (len(config["channel_multiplier"]) - 1)
            return read_llamagen(janus_original(read_weights(folder)), folder, l2_norm=False, image_size=size)
        if model_type == "encodec":
            check(config, {"num_residual_layers": 1, "trim_right_ratio": 1.0}, "an EnCodec")
            if config.get("norm_type", "weight_norm") not in ("weight_norm", "time_group_norm"):
                raise ConvertError(f"{folder}: an EnCodec with norm_type {config['norm_type']!r} is not converted "
                                   "(expected 'weight_norm' or 'time_group_norm')")
            if config.get("norm_type") == "time_group_norm" and config.get("use_causal_conv", True):
                raise ConvertError(f"{folder}: an EnCodec with time_group_norm and use_causal_conv is not converted "
                                   "(a group norm over the whole clip cannot be causal)")
            segments = encodec_segments(config, folder)
        state = read_weights(folder)
        if model_type in ("mimi", "xcodec"):
            try:
                return (read_mimi if model_type == "mimi" else read_xcodec)(state, config)
            except ConvertError as err:
                raise ConvertError(f"{folder}: {err}") from None
        if model_type == "encodec":
            stages = len(config["upsampling_ratios"])
            original = held_in_weight_norm(encodec_original(state, stages), folder)
            return read_encodec(original, folder, sample_rate=int(config["sampling_rate"]),
                                causal=bool(config.get("use_causal_conv", True)),
                                pad_mode=config.get("pad_mode", "reflect"),
                                shortcut=bool(config.get("use_conv_shortcut", True)), segments=segments)
        kwargs = {"encoder_dim": config["encoder_hidden_size"], "encoder_rates": config["downsampling_ratios"],
                  "latent_dim": config["hidden_size"], "decoder_dim": config["decoder_hidden_size"],
                  "decoder_rates": config["upsampling_ratios"], "n_codebooks": config["n_codebooks"],
                  "codebook_size": config["codebook_size"], "codebook_dim": config["codebook_dim"],
                  "sample_rate": config["sampling_rate"]}
        original = dac_original(state, len(kwargs["encoder_rates"]), len(kwargs["decoder_rates"]))
        return read_dac(original, kwargs)
