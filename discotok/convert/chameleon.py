"""``chameleon``: Meta's own release of Chameleon's image tokenizer (``tokenizer/vqgan.ckpt`` + ``vqgan.yaml``), with
its decoder (facebookresearch/chameleon, ``chameleon/inference/vqgan.py`` and ``image_tokenizer.py``).

SOURCE is the folder holding ``vqgan.ckpt`` and ``vqgan.yaml`` (one ``.ckpt``, one ``.yaml``), or the ``.ckpt``
with its ``NAME.yaml`` beside it. The checkpoint is taming-transformers' ``VQModel`` state dict
(``{"state_dict": ...}``, read with ``weights_only=True``); the yaml (``model.params``: ``ddconfig``, ``n_embed``,
``embed_dim``; read as plain data with ``yaml.safe_load``, its ``target`` never imported) is required and checked
against the tensors: a config whose architecture the weights do not have is refused with both named. The
architecture is read from the tensors: taming's encoder and decoder renamed to LlamaGen's (as ``ibq``), so the
``taming`` encoder and decoder with attention on the levels the file has (Chameleon's: none but the middle's),
and a Euclidean ``vq`` (taming's ``VectorQuantizer2``: the nearest code by squared distance) with ``quant_conv`` /
``post_quant_conv`` as its projections. The loss (``loss.*``) is ignored by name and counted in the config's
``metadata``, and an EMA copy is used when the file holds one (``discotok.convert.lit_ema``); taming's ``remap``
of indices and ``double_z`` are refused.

``transformers``' ``ChameleonVQVAE`` holds the same encoder, ``quant_conv`` and codebook under the same names
(no decoder), so ``discotok convert transformers`` of those tensors gives the same ids for the same network input.

Preprocessing (``image_tokenizer.py``): an image with transparency is blended on white (``(1 - a) * 255 + a * rgb``,
truncated to 8 bits), resized so its shorter side is 512 (PIL's Lanczos) and centre cropped to 512x512; pixels
p map to p / 255 * 2 - 1, which is our [-1, 1] as it is (no ``input_scale``). The config records the size as
``image_size`` (512, ``image_tokenizer.py``'s ``target_image_size``, whatever the yaml's ``resolution``) and the
filter and blending as ``preprocessing``, which ``discotok encode`` / ``eval`` apply to image files; decoding
gives images in [-1, 1] as the reference's ``decode`` (which ``image_tokenizer.py`` clamps to [-1, 1] as ours).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, checkpoint_and_config, read_yaml
from discotok.convert.lit_ema import lightning_state, select_weights
from discotok.convert.llamagen import from_taming_names, llamagen_config, read_llamagen
from discotok.registry import CONVERTERS
from discotok.tokenizers.tokenizer import Tokenizer

IMAGE_SIZE = 512
MODEL = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")
PREPROCESSING = {"resize_filter": "lanczos", "alpha_blend": "floor"}
DESCRIBED = {"image_size": IMAGE_SIZE, "alpha": "blended on white, (1 - a) * 255 + a * rgb truncated to 8 bits",
             "resize": "shorter side to image_size (PIL Lanczos), centre crop", "range": "p / 255 * 2 - 1: [-1, 1]"}


def model_params(config: Any) -> tuple[dict, dict]:
    """``model.params`` and its ``ddconfig`` of a taming VQGAN yaml, or ``ConvertError``."""
    try:
        params = config["model"]["params"]
        ddconfig = params["ddconfig"]
        if not isinstance(params, dict) or not isinstance(ddconfig, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise ConvertError("not a Chameleon VQGAN config: no model.params.ddconfig") from None
    if params.get("remap") is not None or ddconfig.get("double_z", False) or \
            ddconfig.get("attn_type", "vanilla") != "vanilla":
        found = {"remap": params.get("remap"), "double_z": ddconfig.get("double_z"),
                 "attn_type": ddconfig.get("attn_type")}
        raise ConvertError(f"a VQGAN with {found} is not converted (Chameleon's: no remap, double_z false, "
                           "vanilla attention)")
    return params, ddconfig


def check_config(config: Any, model: dict[str, Tensor], ours: dict) -> None:
    """Refuse a yaml whose architecture the tensors (taming's names) do not have, naming both."""
    params, dd = model_params(config)
    enc, dec, q = ours["encoder"], ours["decoder"], ours["quantizer"]
    levels = len(enc["channel_mult"])
    resolution = dd.get("resolution")
    said_attn = None
    if resolution is not None and dd.get("attn_resolutions") is not None:
        said_attn = [i for i in range(levels) if int(resolution) // 2**i in [int(r) for r in dd["attn_resolutions"]]]
    mult = dd.get("ch_mult")
    checks = [
        ("n_embed", params.get("n_embed"), q["codebook_size"], ["quantize.embedding.weight"]),
        ("embed_dim", params.get("embed_dim"), q["code_dim"], ["quantize.embedding.weight", "quant_conv.weight"]),
        ("ddconfig z_channels", dd.get("z_channels"), enc["latent_dim"], ["encoder.conv_out.weight"]),
        ("ddconfig ch", dd.get("ch"), enc["channels"], ["encoder.conv_in.weight"]),
        ("ddconfig in_channels", dd.get("in_channels"), enc["in_channels"], ["encoder.conv_in.weight"]),
        ("ddconfig out_ch", dd.get("out_ch"), dec["out_channels"], ["decoder.conv_out.weight"]),
        ("ddconfig ch_mult", None if mult is None else [int(m) for m in mult], enc["channel_mult"],
         [f"encoder.down.{i}.block.0.conv2.weight" for i in range(levels)]),
        ("ddconfig num_res_blocks", dd.get("num_res_blocks"), enc["num_res_blocks"],
         [f"encoder.down.0.block.{j}.conv1.weight" for j in range(enc["num_res_blocks"])]),
        (f"ddconfig attn_resolutions {dd.get('attn_resolutions')} at resolution {resolution} (levels)", said_attn,
         enc["attn_levels"], [k for k in sorted(model) if ".attn." in k and k.endswith("norm.weight")][:4]),
    ]
    for what, said, found, where in checks:
        if said is not None and said != found:
            shapes = "; ".join(f"{k} {tuple(model[k].shape)}" for k in where if k in model) or "none"
            raise ConvertError(f"the config and the weights disagree: the config's {what} is {said}, the weights "
                               f"have {found} ({shapes}); are they the same model's?")


def read_chameleon_vqgan(state: dict[str, Tensor], config: Any, source: Path, config_path: Path) -> Tokenizer:
    """The tokenizer of a Chameleon VQGAN state dict (taming's names) checked against its yaml ``config``."""
    try:
        if "quantize.embedding.weight" not in state or "encoder.down.0.block.0.conv1.weight" not in state:
            raise ConvertError("not a taming VQGAN state dict: no tensor quantize.embedding.weight or "
                               "encoder.down.0.block.0.conv1.weight")
        model, used = select_weights(state, MODEL)
        renamed = from_taming_names(model)
        check_config(config, model, llamagen_config(renamed, l2_norm=False))
    except ConvertError as err:
        raise ConvertError(f"{source} with {config_path.name}: {err}") from None
    metadata = {**used, "converted_from": "chameleon", "config": config_path.name, "preprocessing": DESCRIBED}
    return read_llamagen(renamed, source, metadata=metadata, extra={"preprocessing": dict(PREPROCESSING)},
                         l2_norm=False, image_size=IMAGE_SIZE)


@CONVERTERS.register("chameleon")
class ChameleonConverter(Converter):
    """Chameleon's VQGAN as Meta distributes it (``tokenizer/vqgan.ckpt`` + ``vqgan.yaml``)."""

    source_patterns = ("vqgan.ckpt",)
    describe = ("Chameleon's tokenizer folder (vqgan.ckpt, a taming VQGAN Lightning checkpoint with a 'state_dict', "
                "and vqgan.yaml), or the .ckpt with its .yaml beside it")

    def read(self, source: Path) -> Tokenizer:
        if not source.exists():
            raise ConvertError(f"{source}: no such file or folder (expected {self.describe})")
        ckpt, config_path = checkpoint_and_config(source)
        if config_path is None:
            raise ConvertError(f"{ckpt}: no {ckpt.with_suffix('.yaml').name} beside it; expected {self.describe}")
        state = lightning_state(ckpt, "a Chameleon VQGAN checkpoint")
        return read_chameleon_vqgan(state, read_yaml(config_path), ckpt, config_path)
