"""``wavtokenizer``: WavTokenizer's Lightning checkpoints (Ji et al. 2024; jishengpeng/WavTokenizer).

SOURCE is the checkpoint the publisher distributes (``wavtokenizer_large_speech_320_24k.ckpt``, ...:
``{"state_dict": ...}``, read with ``weights_only=True``), or a folder holding one ``.ckpt`` and at most one
``.yaml``; a config beside the file (``NAME.yaml``) is read too. The config is read as plain data
(``yaml.safe_load``), never instantiated, and only checked against the tensors: a checkpoint whose config and
weights disagree (another model's weights, the 40 / 75 tokens per second confusion) is refused with both shapes
named. The architecture is read from the tensors:

* ``feature_extractor.encodec.encoder``: EnCodec's SEANet, non-causal (split reflect padding, 1x1 skips,
  2-layer LSTM) -> the ``audio`` encoder, as ``encodec`` maps it;
* ``feature_extractor.encodec.quantizer``: one Euclidean EMA codebook (4096 codes of 512) -> ``vq``; WavTokenizer
  encodes with its first level only, so a checkpoint of several levels is refused;
* ``backbone`` + ``head``: the ``vocos`` decoder with WavTokenizer's ``pos_net`` (``attention``) and its
  ``ISTFT(padding="same")``; magnitudes clipped at 100 as the reference's. The adaptive LayerNorms
  (``adanorm_num_embeddings``, conditioned on a bandwidth id) become plain LayerNorms at the bandwidth id the
  reference decodes with, 0 (``bandwidth_id``, kept in the config's ``metadata``).

Ignored by name and counted in ``metadata["ignored"]``: the training module's other parts (discriminators,
losses) and EnCodec's decoder inside the feature extractor, which WavTokenizer never runs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from discotok.convert.base import (
    ConvertError, Converter, Renamed, assemble, checkpoint_and_config, count, read_yaml, rename,
)
from discotok.convert.lit_ema import lightning_state
from discotok.convert.encodec import encodec_config, encodec_rules
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

SAMPLE_RATE = 24_000
ENCODEC = "feature_extractor.encodec."
USED = (ENCODEC + "encoder.", ENCODEC + "quantizer.", "backbone.", "head.")
BLOCK = {"dwconv": "dwconv", "norm": "norm", "pwconv1": "mlp.0", "pwconv2": "mlp.2"}
DECODER_RULES = [
    (r"backbone\.embed\.(weight|bias)", lambda m: f"decoder.embed.{m[1]}"),
    (r"backbone\.pos_net\.(.+)", lambda m: f"decoder.pos_net.{m[1]}"),
    (r"backbone\.norm\.(weight|bias)", lambda m: f"decoder.norm.{m[1]}"),
    (r"backbone\.convnext\.(\d+)\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)",
     lambda m: f"decoder.blocks.{m[1]}.{BLOCK[m[2]]}.{m[3]}"),
    (r"backbone\.convnext\.(\d+)\.gamma", lambda m: f"decoder.blocks.{m[1]}.gamma"),
    (r"backbone\.final_layer_norm\.(weight|bias)", lambda m: f"decoder.final_norm.{m[1]}"),
    (r"head\.out\.(weight|bias)", lambda m: f"decoder.head.{m[1]}"),
    (r"quantizer\.vq\.layers\.0\._codebook\.embed", lambda m: "quantizer.codebook"),
    (r"quantizer\.vq\.layers\.0\._codebook\.embed_avg", lambda m: "quantizer.embed_sum"),
    (r"quantizer\.vq\.layers\.0\._codebook\.cluster_size", lambda m: "quantizer.cluster_size"),
]


def shape(state: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConvertError(f"not a WavTokenizer checkpoint: no tensor {key!r}")
    return tuple(state[key].shape)


def split(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, int]]:
    """The tensors WavTokenizer runs, and how many others each top-level part holds (ignored by name)."""
    used = {k: v for k, v in state.items() if k.startswith(USED)}
    ignored = Counter(".".join(k.split(".")[:3]) if k.startswith(ENCODEC) else k.split(".")[0]
                      for k in state if k not in used)
    return used, dict(sorted(ignored.items()))


def fold_adanorm(state: dict[str, Tensor], bandwidth_id: int) -> dict[str, Tensor]:
    """AdaLayerNorm's per-bandwidth ``scale`` / ``shift`` embeddings as a LayerNorm's weight / bias at ``bandwidth_id``."""
    out = {}
    for key, tensor in state.items():
        if m := re.fullmatch(r"(backbone\.(?:convnext\.\d+\.)?norm)\.(scale|shift)\.weight", key):
            if not 0 <= bandwidth_id < tensor.shape[0]:
                raise ConvertError(f"bandwidth_id {bandwidth_id} outside the {tensor.shape[0]} of {key}")
            out[f"{m[1]}.{'weight' if m[2] == 'scale' else 'bias'}"] = tensor[bandwidth_id]
        else:
            out[key] = tensor
    return out


def wavtokenizer_config(state: dict[str, Tensor], padding: str = "same", sample_rate: int = SAMPLE_RATE) -> dict:
    """Our tokenizer config read from WavTokenizer's tensors (adaptive norms already folded)."""
    encodec = {k[len(ENCODEC):]: v for k, v in state.items() if k.startswith(ENCODEC)}
    config, _ = encodec_config(encodec, sample_rate=sample_rate, causal=False)
    encoder = config["encoder"]
    levels = count(encodec, r"quantizer\.vq\.layers\.(\d+)\..+")
    if levels != 1:
        raise ConvertError(f"{levels} codebook levels: WavTokenizer encodes with one (its quantizer's infer); "
                           "a checkpoint of several is not one of the published single-codebook models")
    bins, code_dim = shape(encodec, "quantizer.vq.layers.0._codebook.embed")
    width, latent_dim, _ = shape(state, "backbone.embed.weight")
    out, _ = shape(state, "head.out.weight")
    quantizer = {"name": "vq", "dim": encoder["latent_dim"], "codebook_size": bins, "code_dim": code_dim,
                 "cosine": False, "ema": True, "decay": 0.99, "kmeans_init": False, "dead_code_threshold": 2.0,
                 "commitment_weight": 1.0}
    decoder = {"name": "vocos", "latent_dim": latent_dim, "hop_length": math.prod(encoder["ratios"]), "n_fft": out - 2,
               "width": width, "hidden": shape(state, "backbone.convnext.0.pwconv1.weight")[0],
               "depth": count(state, r"backbone\.convnext\.(\d+)\..+"), "max_log_magnitude": math.log(100.0),
               "attention": "backbone.pos_net.0.norm1.weight" in state, "padding": padding}
    return tokenizer_config(encoder, quantizer, decoder, modality="audio", sample_rate=sample_rate, channels=1,
                            metadata={"converted_from": "wavtokenizer"})


def check_config(config: dict[str, Any], state: dict[str, Tensor], ours: dict) -> None:
    """Refuse a publisher's config whose architecture the tensors do not have, naming both."""
    try:
        args = config["model"]["init_args"]
        fe, bb, hd = (args[part]["init_args"] for part in ("feature_extractor", "backbone", "head"))
    except (KeyError, TypeError):
        raise ConvertError("not a WavTokenizer config: no model.init_args.{feature_extractor,backbone,head}.init_args")
    enc, dec = ours["encoder"], ours["decoder"]
    ratios_key = f"{ENCODEC}encoder.model.{{}}.conv.conv.weight_v"
    strides = [ratios_key.format(3 + 3 * i) for i in range(len(enc["ratios"]))]
    checks = [
        ("feature_extractor vq_bins", fe.get("vq_bins"), ours["quantizer"]["codebook_size"],
         f"{ENCODEC}quantizer.vq.layers.0._codebook.embed"),
        ("feature_extractor dowmsamples", fe.get("dowmsamples"), enc["ratios"], ", ".join(strides)),
        ("backbone input_channels", bb.get("input_channels"), dec["latent_dim"], "backbone.embed.weight"),
        ("backbone dim", bb.get("dim"), dec["width"], "backbone.embed.weight"),
        ("backbone intermediate_dim", bb.get("intermediate_dim"), dec["hidden"], "backbone.convnext.0.pwconv1.weight"),
        ("backbone num_layers", bb.get("num_layers"), dec["depth"], "backbone.convnext.*"),
        ("head dim", hd.get("dim"), dec["width"], "head.out.weight"),
        ("head n_fft", hd.get("n_fft"), dec["n_fft"], "head.out.weight (n_fft + 2 rows)"),
        ("head hop_length", hd.get("hop_length"), dec["hop_length"], "the encoder's strides"),
    ]
    for what, said, found, where in checks:
        if said is not None and said != found:
            shapes = "; ".join(f"{k} {tuple(state[k].shape)}" for k in where.split(", ") if k in state)
            raise ConvertError(f"the config and the weights disagree: the config's {what} is {said}, the weights "
                               f"have {found} ({shapes or where}); are they the same model's?")
    adanorm = bb.get("adanorm_num_embeddings")
    rows = state["backbone.norm.scale.weight"].shape[0] if "backbone.norm.scale.weight" in state else None
    if adanorm != rows:
        raise ConvertError(f"the config and the weights disagree: the config's backbone adanorm_num_embeddings is "
                           f"{adanorm}, the weights have {rows} (backbone.norm.scale.weight)")


@CONVERTERS.register("wavtokenizer")
class WavTokenizerConverter(Converter):
    """WavTokenizer Lightning checkpoints (``{"state_dict": ...}``), with their config yaml when beside them."""

    source_patterns = ("wavtokenizer_*.ckpt",)
    describe = "a WavTokenizer Lightning checkpoint (.ckpt with a 'state_dict'), or a folder with it and its .yaml"

    def read(self, source: Path) -> Tokenizer:
        ckpt, config_path = checkpoint_and_config(source)
        state = lightning_state(ckpt, "a WavTokenizer checkpoint")
        config = None if config_path is None else read_yaml(config_path)
        return read_wavtokenizer(state, ckpt, config, config_path)


def read_wavtokenizer(state: dict[str, Tensor], source: Path, config: dict | None = None,
                      config_path: Path | None = None, bandwidth_id: int = 0) -> Tokenizer:
    """The tokenizer of WavTokenizer's tensors (the training module's names), checked against its ``config``."""
    used, ignored = split(state)
    try:
        folded = fold_adanorm(used, bandwidth_id)
        ours = wavtokenizer_config(folded)
        if config is not None:
            check_config(config, used, ours)
            ours["decoder"]["padding"] = config["model"]["init_args"]["head"]["init_args"].get("padding", "same")
    except ConvertError as err:
        where = f"{source} with {config_path}" if config_path else str(source)
        raise ConvertError(f"{where}: {err}") from None
    window = folded.pop("head.istft.window", None)
    n_fft = ours["decoder"]["n_fft"]
    if window is None or window.shape != (n_fft,) or not torch.allclose(window.float(), torch.hann_window(n_fft)):
        raise ConvertError(f"{source}: head.istft.window is not a Hann window of {n_fft} samples "
                           f"({None if window is None else tuple(window.shape)})")
    ours["metadata"].update({"bandwidth_id": bandwidth_id, "ignored": ignored,
                             "config": config_path.name if config_path else None})
    return assemble(ours, renamed(folded, len(ours["encoder"]["ratios"])), [r"quantizer\.initted"])


def renamed(folded: dict[str, Tensor], stages: int) -> Renamed:
    """WavTokenizer's tensors (adaptive norms folded, the ISTFT window taken out) under our names, for an encoder of
    ``stages`` downsampling stages."""
    encoder = rename({k[len(ENCODEC):]: v for k, v in folded.items() if k.startswith(ENCODEC + "encoder.")},
                     encodec_rules(stages))
    rest = rename({(k[len(ENCODEC):] if k.startswith(ENCODEC) else k): v for k, v in folded.items()
                   if not k.startswith(ENCODEC + "encoder.") and not k.endswith("._codebook.inited")}, DECODER_RULES)
    tensors = Renamed()
    for part in (encoder, rest):
        tensors.update(part)
        tensors.origin.update(part.origin)
    return tensors
