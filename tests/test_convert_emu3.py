"""``discotok convert transformers`` of Emu3's VQ-VAE (MoVQ, ``Emu3VQVAE``): built small with random weights, random
norms, batch-norm statistics and codebook, saved by ``save_pretrained``; on real photos the converted tokenizer
gives transformers' ids and its decoded image (the first of the decoded frames), through the processor's
normalisation."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.conftest import randomised

transformers = pytest.importorskip("transformers")
from transformers.models.emu3.modeling_emu3 import Emu3VQVAE  # noqa: E402

CONFIG = {"base_channels": 32, "channel_multiplier": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [2],
          "hidden_size": 64, "num_attention_heads": 2, "embed_dim": 8, "latent_channels": 8, "codebook_size": 128,
          "temporal_downsample_factor": 4}


def spread_norms(model: torch.nn.Module) -> None:
    """Norm gains around 1 and batch-norm statistics away from (0, 1), so a mis-mapped norm shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name or "norm_layer" in name) and name.endswith("weight"):
                p.normal_(1.0, 0.2)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)


def spread_codebook(codes: torch.Tensor, z: torch.Tensor) -> None:
    """Fill a codebook (K, D) with random codes drawn per channel at the mean and spread of latents z (B, D, ...)."""
    z = z.transpose(0, 1).flatten(1)
    codes.copy_(z.mean(1) + z.std(1) * torch.randn_like(codes))


def pixels(x: torch.Tensor, tok: Tokenizer) -> torch.Tensor:
    """Our images in [-1, 1] as the processor gives them to transformers (rescaled, normalised)."""
    scale, shift = (torch.tensor(tok.config["encoder"][k]).reshape(1, 3, 1, 1) for k in ("input_scale", "input_shift"))
    return x * scale + shift


def reference(tmp_path, photo_batch):
    """A random Emu3VQVAE saved as transformers saves it, its codebook at the scale of its latents for the photos."""
    torch.manual_seed(0)
    ref = randomised(Emu3VQVAE(transformers.Emu3VQVAEConfig(**CONFIG)))
    spread_norms(ref)
    with torch.no_grad():
        frames = photo_batch[:, None].repeat(1, CONFIG["temporal_downsample_factor"], 1, 1, 1)
        z = ref.quant_conv(ref.encoder(frames).permute(0, 2, 1, 3, 4))
        spread_codebook(ref.quantize.embedding.weight, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.save_pretrained(tmp_path / "emu3_vq")
    return ref, tmp_path / "emu3_vq"


def test_converted_emu3_gives_transformers_ids_and_images(tmp_path, photo_batch, capsys):
    ref, folder = reference(tmp_path, photo_batch)
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert tok.config["decoder"]["name"] == "movq" and tok.modality.num_tokens == 128 * 128  # 512x512 at factor 4
    x = photo_batch  # eight 32x32 crops of real photos in [-1, 1]
    with torch.no_grad():
        expected = ref.encode(pixels(x, tok), image_sizes=torch.tensor([[32, 32]] * len(x))).image_tokens
        expected = torch.stack(expected)
        frames = pixels(x, tok)[:, None].repeat(1, CONFIG["temporal_downsample_factor"], 1, 1, 1)
        latents = ref.quant_conv(ref.encoder(frames).permute(0, 2, 1, 3, 4))  # (B, D, 1, h, w)
        assert (tok.encode_latents(x) - latents.flatten(2).transpose(1, 2)).abs().max() < 1e-4
        ids = tok.encode(x)
        assert ids.shape == (8, 64) and torch.equal(ids, expected.reshape(8, -1))
        assert ids.unique().numel() >= 40
        dec = tok.config["decoder"]
        scale, shift = (torch.tensor(dec[k]).reshape(1, 3, 1, 1) for k in ("output_scale", "output_shift"))
        reconstruction = ((ref.decode(expected) - shift) / scale).clamp(-1, 1)
        diff = (tok.decode(ids) - reconstruction).abs().max()
        assert diff < 1e-4, diff
        assert reconstruction.std() > 0.1  # not a saturated, constant image
        crop = x[:2, :, 4:28, :]  # 24x32: another size, not square (the grid of ids comes with the layout)
        expected = torch.stack(ref.encode(pixels(crop, tok), image_sizes=torch.tensor([[24, 32]] * 2)).image_tokens)
        ids, layout = tok.encode(crop, return_layout=True)
        assert layout.shape == (6, 8) and torch.equal(ids, expected.reshape(2, -1))
        reconstruction = ((ref.decode(expected) - shift) / scale).clamp(-1, 1)
        assert (tok.decode(ids, layout) - reconstruction).abs().max() < 1e-4
    out = tok.train()(x[:2])  # it fine-tunes: a training step reaches every part (batch norms in training mode)
    ((out.x_hat - x[:2]).pow(2).mean() + out.quantized.loss).backward()
    assert all(p.grad is not None for n, p in tok.named_parameters() if not n.startswith("quantizer"))


def test_emu3_preprocessing_comes_from_the_processor_file(tmp_path, photo_batch):
    _, folder = reference(tmp_path, photo_batch)
    tok = convert("transformers", folder)  # no preprocessor_config.json: Emu3ImageProcessor's defaults (CLIP's)
    assert tok.config["metadata"]["preprocessing"]["mean"] == [0.48145466, 0.4578275, 0.40821073]
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                                                                 "rescale_factor": 1 / 255}))
    tok = convert("transformers", folder)  # mean = std = 0.5: our [-1, 1] is the model's input as it is
    assert tok.config["encoder"]["input_scale"] == pytest.approx([1.0] * 3)
    assert tok.config["encoder"]["input_shift"] == pytest.approx([0.0] * 3)


def test_a_damaged_emu3_directory_is_refused(tmp_path, photo_batch):
    _, folder = reference(tmp_path, photo_batch)
    state = load_file(str(folder / "model.safetensors"))
    del state["decoder.up_block.up.1.block.0.norm1.conv_y.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"missing: decoder\.conv_blocks\.1\.res\.0\.norm1\.conv_y\.weight"):
        convert("transformers", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "latent_channels": 4}))
    with pytest.raises(ConvertError, match="latent_channels 4 != embed_dim 8"):
        convert("transformers", folder)
