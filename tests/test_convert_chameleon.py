"""``discotok convert transformers`` of Chameleon's VQ-VAE (``ChameleonVQVAE``: encoder and quantizer only): built
small with random weights, norms and codebook, saved by ``save_pretrained``; on real photos the converted tokenizer
gives transformers' ids through the processor's scaling, and refuses to decode with a message saying why."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.conftest import randomised
from tests.test_convert_emu3 import pixels, spread_codebook, spread_norms

transformers = pytest.importorskip("transformers")
from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE  # noqa: E402

CONFIG = {"base_channels": 32, "channel_multiplier": [1, 2, 2], "num_res_blocks": 1, "resolution": 32,
          "latent_channels": 8, "embed_dim": 8, "num_embeddings": 128}


def reference(tmp_path, photo_batch, **config):
    """A random ChameleonVQVAE saved as transformers saves it, its codebook at the scale of its latents."""
    torch.manual_seed(0)
    ref = randomised(ChameleonVQVAE(transformers.ChameleonVQVAEConfig(**CONFIG, **config)))
    spread_norms(ref)
    with torch.no_grad():
        z = ref.quant_conv(ref.encoder(photo_batch))
        spread_codebook(ref.quantize.embedding.weight, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.save_pretrained(tmp_path / "chameleon_vq")
    return ref, tmp_path / "chameleon_vq"


@pytest.mark.parametrize("attn_resolutions", [None, [8]])  # Chameleon's: none; [8]: after each block of level 2
def test_converted_chameleon_gives_transformers_ids(tmp_path, photo_batch, capsys, attn_resolutions):
    ref, folder = reference(tmp_path, photo_batch, attn_resolutions=attn_resolutions)
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert tok.config["encoder"]["attn_levels"] == ([] if attn_resolutions is None else [2])
    assert tok.config["encoder"]["input_scale"] == pytest.approx([127.5 * 0.0078] * 3)  # the processor's 0.0078
    x = photo_batch  # eight 32x32 crops of real photos in [-1, 1]
    with torch.no_grad():
        expected = ref.encode(pixels(x, tok)).image_tokens.reshape(8, -1)
        latents = ref.quant_conv(ref.encoder(pixels(x, tok)))
        assert (tok.encode_latents(x) - latents.flatten(2).transpose(1, 2)).abs().max() < 1e-4
        ids = tok.encode(x)
    assert ids.shape == (8, 64) and torch.equal(ids, expected)
    assert ids.unique().numel() >= 40
    with pytest.raises(ValueError, match="this checkpoint has no decoder"):
        tok.decode(ids)


def test_a_damaged_chameleon_directory_is_refused(tmp_path, photo_batch):
    _, folder = reference(tmp_path, photo_batch)
    state = load_file(str(folder / "model.safetensors"))
    del state["encoder.down.1.block.0.nin_shortcut.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"missing: encoder\.conv_blocks\.1\.res\.0\.skip\.weight"):
        convert("transformers", folder)
