"""Chameleon's VQ-VAE in the transformers layout (``ChameleonVQVAE``, ``model_type`` ``chameleon_vqgan``) -> an
encode-only tokenizer.

transformers holds Chameleon's encoder and quantizer only (no decoder), so the tokenizer encodes exactly as
``ChameleonVQVAE.encode`` does and refuses to decode (the ``absent`` decoder, whose error says so). The
encoder is VQGAN's (``taming``; the module names are Janus's, renamed as for Janus then LlamaGen) with
attention on the levels whose resolution ``attn_resolutions`` lists (none by default; the middle's attention
always), its 1x1 ``quant_conv`` to ``embed_dim`` inside the encoder, then a Euclidean ``vq``.
``post_quant_conv`` is dropped: only the missing decoder would use it.

What ``encode`` takes: images (B, 3, H, W) in [-1, 1], H and W multiples of 2^(levels - 1) (16 for Chameleon;
its processor resizes and crops to 512x512, the nominal ``image_size``). The processor's scaling
(``preprocessor_config.json`` beside the weights, else ``ChameleonImageProcessor``'s defaults: pixels times
0.0078 minus 1, which maps 255 to 0.989, not 1) is recorded as the encoder's ``input_scale`` / ``input_shift``.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, assemble, rename
from discotok.convert.llamagen import llamagen_rules
from discotok.convert.processor import processor_affine
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

NO_DECODER = ("this checkpoint has no decoder: transformers' ChameleonVQVAE holds Chameleon's encoder and quantizer "
              "only, so this tokenizer encodes only")


def chameleon_config(config: dict, folder: Path) -> dict:
    """Our tokenizer config for a ``ChameleonVQVAEConfig`` (as its ``config.json`` holds it)."""
    try:
        mult = [int(m) for m in config["channel_multiplier"]]
        resolution, latent, embed = int(config["resolution"]), int(config["latent_channels"]), int(config["embed_dim"])
        attn = [int(r) for r in config.get("attn_resolutions") or []]
        encoder = {"name": "taming", "latent_dim": latent, "in_channels": int(config.get("in_channels", 3)),
                   "channels": int(config["base_channels"]), "channel_mult": mult,
                   "num_res_blocks": int(config["num_res_blocks"]), "embed_dim": embed,
                   "attn_levels": [i for i in range(len(mult)) if resolution // 2**i in attn]}
        codebook_size = int(config["num_embeddings"])
    except (KeyError, TypeError, ValueError) as err:
        what = f"{type(err).__name__}: {err}"
        raise ConvertError(f"{folder}: config.json is not a complete ChameleonVQVAEConfig ({what})") from None
    if config.get("double_latent", False) or config.get("attn_type", "vanilla") != "vanilla":
        found = {k: config.get(k) for k in ("double_latent", "attn_type")}
        raise ConvertError(f"{folder}: a Chameleon VQ-VAE with {found} is not converted "
                           "(Chameleon's: False and 'vanilla')")
    affine = processor_affine(folder, 0.0078, [1.0] * 3, [1.0] * 3)
    encoder.update(input_scale=affine["scale"], input_shift=affine["shift"])
    quantizer = {"name": "vq", "dim": embed, "codebook_size": codebook_size, "ema": False, "kmeans_init": False,
                 "commitment_weight": 0.25, "codebook_weight": 1.0}
    decoder = {"name": "absent", "latent_dim": embed, "message": NO_DECODER}
    preprocessing = {k: affine[k] for k in ("rescale", "mean", "std")}
    return tokenizer_config(encoder, quantizer, decoder, image_size=[resolution, resolution],
                            metadata={"converted_from": "transformers chameleon_vqgan", "preprocessing": preprocessing})


def read_chameleon(state: dict[str, Tensor], config: dict, folder: Path) -> Tokenizer:
    """The encode-only tokenizer of transformers' ``ChameleonVQVAE`` tensors (in Janus's names, renamed to
    LlamaGen's by ``janus_original``) and config."""
    ours = chameleon_config(config, folder)
    state = {k: v for k, v in state.items() if not k.startswith("post_quant_conv.")}
    rules = [(r"quant_conv\.(weight|bias)", lambda m: f"encoder.quant_conv.{m[1]}"), *llamagen_rules()]
    try:
        return assemble(ours, rename(state, rules), [r"quantizer\.(cluster_size|initted)"])
    except ConvertError as err:
        raise ConvertError(f"{folder}: {err}") from None
