"""``discotok convert transformers`` on X-Codec: a small transformers ``XcodecModel`` (random weights, random non-zero
codebooks filled residual by residual, offline) gives the reference's ids and audio item by item inside a padded
batch of clips of different lengths (each encoded by the reference as it is: its frame count and half-hop shift of
the acoustic input), at every depth (bandwidth); broken sources are refused with the reason."""

from __future__ import annotations

import json

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.hf_reference import padded, save, written

transformers = pytest.importorskip("transformers")

ACOUSTIC = {"encoder_hidden_size": 8, "downsampling_ratios": [8, 5, 4, 2], "decoder_hidden_size": 64,
            "upsampling_ratios": [8, 5, 4, 2], "hidden_size": 32}
BANDWIDTHS = [0.4, 0.8, 1.6]  # 256 codes at 50 Hz: 0.4 kbps per level, 4 levels
# hop 320, L mod 320: 30 (the longest: a frame fewer than ceil(L / 320)), 315, 217 (the acoustic input shifted by
# half a hop), 0 (whole hops), 40 (a frame fewer), 151 (shifted), 200 (shifted, one frame)
LENGTHS = [4830, 3515, 2777, 3200, 2600, 1111, 200]
CLIPS = [0, 1, 2, 3, 6, 7, 0]  # speech_clips 4 and 5 fit the codebooks


def xcodec_config(**changes) -> object:
    semantic = transformers.HubertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=512, conv_dim=[128] * 7)  # HuBERT base's 512: slower
    return transformers.XcodecConfig(acoustic_model_config=dict(ACOUSTIC), semantic_model_config=semantic,
                                     codebook_size=256, target_bandwidths=BANDWIDTHS, **changes)


def branches(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The acoustic and semantic latents (B, D, frames) transformers' ``XcodecModel.encode`` joins, for whole hops."""
    return model.acoustic_encoder(x), model.encoder_semantic(model._extract_semantic_features(x).transpose(1, 2))


def embeddings(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The latents transformers' ``XcodecModel.encode`` quantizes, (frames, dim), for clips of whole hops."""
    joined = torch.cat(branches(model, x), dim=1)
    return model.fc(joined.transpose(1, 2)).reshape(-1, model.config.hidden_size)


@torch.no_grad()
def randomised_xcodec(model: torch.nn.Module, speech: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """A fresh ``XcodecModel`` made a meaningful reference: Snake slopes, biases and LayerNorms spread, ``fc``'s
    acoustic columns scaled so that both branches weigh alike in its output (at random init the acoustic one is
    hundreds of times smaller, and the ids would not depend on it), every codebook
    (all zero when built) filled level by level with random codes at the scale of the residuals of the latents of
    ``speech`` (B, 1, T) (each dimension's mean and spread: codes drawn apart, not copied from a few residuals, so
    no two are near-tied for a latent), and the output scaled into [-1, 1] (our decode clamps)."""
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("alpha"):
            p.uniform_(0.5, 2.0)
        elif "layer_norm" in name:
            p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.05)
    acoustic, semantic = branches(model, speech)
    width = acoustic.shape[1]
    weight = model.fc.weight
    weight[:, :width] *= (weight[:, width:] @ semantic).std() / (weight[:, :width] @ acoustic).std()
    residual = embeddings(model, speech)
    for level in model.quantizer.quantizers:
        book = level.codebook
        size = book.embed.shape[0]
        codes = residual.mean(0) + residual.std(0) * torch.randn(size, residual.shape[1])
        book.embed.copy_(codes)
        book.embed_avg.copy_(codes * 2.0)
        book.cluster_size.copy_(torch.full((size,), 2.0))
        residual = residual - book.decode(book.encode(residual))
    audio = model.decode(model.encode(speech).audio_codes).audio_values
    last = model.acoustic_decoder.conv2
    last.weight.mul_(0.5 / audio.abs().max())
    last.bias.mul_(0.5 / audio.abs().max())
    return model.eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory, speech_clips):
    """The reference, its directory and its clips (LENGTHS samples of speech)."""
    clips = [speech_clips[i][:, :n] for i, n in zip(CLIPS, LENGTHS, strict=True)]
    torch.manual_seed(1)
    ref = transformers.XcodecModel(xcodec_config()).eval()
    ref = randomised_xcodec(ref, padded([c[:, :3200] for c in speech_clips[4:6]])[0])  # codes fitted on other clips
    return ref, save(ref, tmp_path_factory.mktemp("xcodec") / "xcodec_small"), clips


def test_converted_xcodec_gives_the_reference_ids_and_audio(small, tmp_path, capsys):
    """Every item of a padded batch, and each clip alone, gets transformers' ids of the clip as it is
    (floor((L - 80) / 320) + 1 frames) and its audio (frames x 320 samples, cut to L), zero past them."""
    ref, folder, clips = small
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.quantizer.depth) == (16_000, 320, 4)
    assert tok.modality.bits_per_second() == 1600
    batch, lengths = padded(clips)
    ids = tok.encode(batch, lengths)
    frames = tok.modality.num_frames(lengths)
    assert frames.tolist() == [(n - 80) // 320 + 1 for n in LENGTHS] and ids.shape[1] == int(frames.max()) == 15
    decoded = tok.decode(ids, lengths=lengths)
    assert decoded.shape == (len(clips), 1, 15 * 320)  # the longest item's frames: 4800 of its 4830 samples
    worst = 0.0
    with torch.no_grad():
        for b, (clip, n) in enumerate(zip(clips, frames.tolist())):
            out = ref(clip[None])  # transformers' codes (depth, frames) and audio, decoded and cut to L samples
            codes, expected = out.audio_codes[0], out.audio_values[0].clamp(-1, 1)
            valid = expected.shape[-1]
            assert codes.shape[-1] == n and valid == min(clip.shape[-1], n * 320)
            assert torch.equal(ids[b, :n], codes.T), f"item {b}"
            worst = max(worst, (decoded[b, :, :valid] - expected).abs().max().item())
            assert not decoded[b, :, valid:].any(), f"item {b} past its samples"
            alone = tok(clip[None])  # forward: the clip's ids, and its L samples, zero past its frames'
            assert torch.equal(alone.ids[0], codes.T), f"item {b} alone"
            assert alone.x_hat.shape == (1, *clip.shape) and not alone.x_hat[..., valid:].any()
            audio = tok.decode(alone.ids)
            assert audio.shape[-1] == n * 320
            worst = max(worst, *((y[0, :, :valid] - expected).abs().max().item() for y in (audio, alone.x_hat)))
    assert worst < 1e-4
    for level in range(4):  # the codebooks are not trivial: every level uses many codes
        assert ids[..., level].unique().numel() >= 15, f"level {level}"  # of 256, over the items' frames


def test_xcodec_lengths_follow_transformers_rule(small):
    """``num_frames`` / ``max_samples`` are transformers' rule at every remainder of the hop; decode takes the lengths
    the ids' frames allow (80 samples past whole hops of them) and no more; an item below one frame is refused."""
    tok = convert("transformers", small[1])
    lengths = torch.arange(80, 2000)
    assert torch.equal(tok.modality.num_frames(lengths), (lengths - 80) // 320 + 1)
    assert [tok.encoder.max_samples(n) for n in (1, 2, 6)] == [399, 719, 1999]
    ids = tok.encode(small[2][1][None])  # 3515 samples: 11 frames
    assert ids.shape[1] == 11 and tok.decode(ids, lengths=torch.tensor([3599])).shape == (1, 1, 3520)
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.3599"):
        tok.decode(ids, lengths=torch.tensor([3600]))
    with pytest.raises(ValueError, match=r"at least 80 samples"):
        tok.encode(torch.zeros(2, 1, 320), torch.tensor([320, 79]))


def test_depths_are_transformers_bandwidths(small):
    ref, folder, clips = small
    tok = convert("transformers", folder)
    x = clips[2][None]  # shifted acoustic input
    with torch.no_grad():
        for kbps, depth in zip(BANDWIDTHS, (1, 2, 4)):
            assert tok.modality.depth_for_bandwidth(kbps) == depth
            codes = ref.encode(x, bandwidth=kbps).audio_codes
            ids = tok.encode(x, depth=depth)
            assert ids.shape[-1] == depth and torch.equal(ids[0], codes[0].T)
            expected = ref.decode(codes).audio_values.clamp(-1, 1)
            assert (tok.decode(ids) - expected).abs().max() < 1e-4


def test_broken_xcodec_sources_are_refused(small, tmp_path):
    from safetensors.torch import load_file

    folder = small[1]
    config = json.loads((folder / "config.json").read_text())
    state = load_file(folder / "model.safetensors")

    edited = {k: v for k, v in state.items() if k != "semantic_model.encoder.layers.1.attention.k_proj.weight"}
    edited["quantizer.quantizers.7.codebook.embed"] = torch.zeros(256, 288)
    with pytest.raises(ConvertError, match=r"1 missing: encoder.semantic.layers.1.attention.k_proj.weight; "
                                           r"1 unexpected: quantizer.levels.7.codebook"):
        convert("transformers", written(tmp_path / "edited", edited, config))
    without = {k: v for k, v in state.items() if not k.startswith("acoustic_decoder.block.1.res_unit2.")}
    with pytest.raises(ConvertError, match=r"missing: decoder.acoustic.stages.1.units.1.act1.alpha, "):
        convert("transformers", written(tmp_path / "no_unit", without, config))
    training_only = {k: v for k, v in state.items() if not k.startswith(("decoder_semantic.", "fc1."))}
    assert len(training_only) < len(state)
    assert convert("transformers", written(tmp_path / "inference_only", training_only, config)).quantizer.depth == 4
    semantic = {**config["semantic_model_config"], "do_stable_layer_norm": True}
    with pytest.raises(ConvertError, match=r"an X-Codec with semantic_model_config \{'do_stable_layer_norm': True\}"):
        convert("transformers", written(tmp_path / "stable", state, config, semantic_model_config=semantic))
    with pytest.raises(ConvertError, match=r"semantic strides \[2, 1\] is not converted"):
        convert("transformers", written(tmp_path / "strided", state, config, strides=[2, 1]))
    with pytest.raises(ConvertError, match=r"codebook_dim 64 differs from the code space's 288"):
        convert("transformers", written(tmp_path / "projected", state, config, codebook_dim=64))


def test_xcodec_groups_compose_at_the_published_size():
    """``encoder=xcodec decoder=xcodec``: hf-audio/xcodec-hubert-librispeech's architecture (DAC 64 -> 256, HuBERT
    base), as many parameters as transformers' default ``XcodecModel`` without its training-only semantic decoder
    (ours add weight norm's per-channel gains)."""
    from hydra import compose, initialize_config_dir

    from discotok.defaults import config_dir
    from discotok.train.run import tokenizer_spec

    with torch.device("meta"):
        ref = transformers.XcodecModel(transformers.XcodecConfig())
    training_only = ("decoder_semantic.", "fc1.", "semantic_model.masked_spec_embed")
    expected = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(training_only))
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=["encoder=xcodec", "decoder=xcodec", "quantizer=rvq", "data=speech",
                                          "latent_dim=1024", "quantizer.depth=8", "quantizer.codebook_size=1024"])
    with torch.device("meta"):
        tok = Tokenizer.from_config(tokenizer_spec(cfg))
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.modality.bits_per_second()) == (16_000, 320, 4000)
    assert sum(p.numel() for p in tok.parameters()) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("train_hubert", [False, True])
def test_a_tiny_xcodec_trains_a_step(speech_clips, train_hubert):
    """The xcodec encoder / decoder train on a padded batch: gradients reach the acoustic and semantic convolutions,
    ``fc`` and the decoder; HuBERT only with ``train_hubert`` (X-Codec keeps it frozen)."""
    acoustic = {"latent_dim": 8, "channels": 4, "ratios": [2, 4, 5, 8], "dilations": [1], "activation": "snake",
                "sequence": "none", "compress": 1}
    hubert = {"dim": 16, "layers": 1, "heads": 2, "mlp_dim": 32, "conv_channels": [8] * 7, "position_kernel": 8,
              "position_groups": 2}
    tok = Tokenizer.from_config({
        "modality": "audio", "sample_rate": 16_000, "channels": 1,
        "encoder": {"name": "xcodec", "acoustic": acoustic, "hubert": hubert, "dim": 24, "train_hubert": train_hubert},
        "decoder": {"name": "xcodec", "acoustic": {**acoustic, "ratios": [8, 5, 4, 2]}, "dim": 24},
        "quantizer": {"name": "rvq", "dim": 24, "depth": 2, "codebook_size": 16, "ema": False, "kmeans_init": False}})
    tok.train()
    batch, lengths = padded([speech_clips[0][:, :1000], speech_clips[1][:, :333]])
    out = tok(batch, lengths=lengths)
    assert out.x_hat.shape == batch.shape and out.ids.shape == (2, 3, 2)  # 1000 samples: 3 frames
    (out.quantized.loss + (out.x_hat - batch).abs().mean()).backward()
    for part in (tok.encoder.acoustic, tok.encoder.semantic_encoder, tok.encoder.fc, tok.decoder):
        assert all(p.grad is not None for p in part.parameters()), [n for n, p in part.named_parameters() if p.grad is None]
    assert all((p.grad is not None) == train_hubert for p in tok.encoder.semantic.parameters())
