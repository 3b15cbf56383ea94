"""``discotok convert transformers``: EnCodec and DAC in the Hugging Face transformers layout (random weights,
built from their configs offline) give the reference's ids and audio, and the same tokenizer as the
publisher's original layout."""

from __future__ import annotations

import warnings

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.tokenizers.hub import publisher_checkpoint
from tests.conftest import randomised as randomise

transformers = pytest.importorskip("transformers")


def saved(model: torch.nn.Module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(path)
    return path


def test_transformers_encodec(tmp_path, speech_clips, capsys):
    config = transformers.EncodecConfig(num_filters=4, hidden_size=16, upsampling_ratios=[8, 5, 4, 2], codebook_size=32,
                                        target_bandwidths=[1.5, 3.0], sampling_rate=24_000, use_causal_conv=True,
                                        norm_type="weight_norm")
    ref = randomise(transformers.EncodecModel(config))
    folder = saved(ref, tmp_path / "encodec_24khz")
    assert publisher_checkpoint(folder)[0] == "transformers"  # a hub repository of this layout converts on the fly
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.quantizer.depth) == (24_000, 320, 8)
    for clip in (speech_clips[0][None, :, :2000], speech_clips[1][None, :, :4321]):
        with torch.no_grad():
            out = ref.encode(clip, bandwidth=3.0)
            codes = out.audio_codes[0, 0].T
            ids = tok.encode(clip, depth=codes.shape[1])
            assert torch.equal(ids[0], codes)
            expected = ref.decode(out.audio_codes, out.audio_scales)[0][..., : clip.shape[-1]]
            assert (tok.decode(ids, size=(clip.shape[-1],)) - expected).abs().max() < 1e-4


def test_transformers_dac_matches_its_original_layout(tmp_path, speech_clips):
    config = transformers.DacConfig(encoder_hidden_size=8, downsampling_ratios=[2, 4, 5], decoder_hidden_size=64,
                                    upsampling_ratios=[5, 4, 2], n_codebooks=3, codebook_size=16, codebook_dim=4,
                                    sampling_rate=16_000, hidden_size=32)
    ref = randomise(transformers.DacModel(config))
    tok = convert("transformers", saved(ref, tmp_path / "dac"))
    clip = speech_clips[2][None, :, :1600]
    with torch.no_grad():
        out = ref.encode(clip)
        ids = tok.encode(clip)
        assert torch.equal(ids[0], out.audio_codes[0].T)
        expected = ref.decode(audio_codes=out.audio_codes).audio_values.reshape(-1)
        assert (tok.decode(ids).reshape(-1)[: expected.numel()] - expected).abs().max() < 1e-4


def test_other_transformers_models_are_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "hubert"}')
    (tmp_path / "m" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConvertError, match="model_type 'hubert'; FORMAT transformers converts 'encodec', 'dac', 'mimi', "
                       "'xcodec', 'janus_vqgan', 'emu3_vqgan' and 'chameleon_vqgan'"):
        convert("transformers", tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"model_type": "encodec", "num_residual_layers": 2}')
    with pytest.raises(ConvertError, match="num_residual_layers"):
        convert("transformers", tmp_path / "m")


def test_transformers_janus_vqvae(tmp_path):
    from transformers.models.janus.modeling_janus import JanusVQVAE

    config = transformers.JanusVQVAEConfig(base_channels=32, channel_multiplier=[1, 2], num_res_blocks=1,
                                           latent_channels=16, embed_dim=4, num_embeddings=32, num_patches=8)
    ref = randomise(JanusVQVAE(config))
    with torch.no_grad():  # transformers initialises the codebook uniformly tiny: spread it, and the norms
        ref.quantize.embedding.weight.normal_()
        for name, p in ref.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.1)
    tok = convert("transformers", saved(ref, tmp_path / "janus_vq"))
    assert tok.modality.image_size == (16, 16) and tok.config["encoder"]["name"] == "taming"
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        h = ref.quant_conv(ref.encoder(x))
        quant, _, indices = ref.quantize(h)
        ids = tok.encode(x)
        assert torch.equal(ids.reshape(-1), indices.reshape(-1))
        expected = ref.decoder(ref.post_quant_conv(quant))
        assert (tok.decode(ids) - expected.clamp(-1, 1)).abs().max() < 1e-4
