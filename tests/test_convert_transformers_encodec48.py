"""``discotok convert transformers`` on EnCodec 48 kHz: transformers' ``EncodecModel`` with facebook/encodec_48khz's
config (stereo, time group norm, not causal, ``normalize``, ``chunk_length_s=1.0``, ``overlap=0.01``) at a small
width, random weights and codebooks filled at the latents' scale. On a padded batch of stereo clips of four lengths
(3, 2, 1 and 1 segments) each item gets transformers' ids and audio alone, in both forms: the network on the whole
clip (``Tokenizer.encode`` / ``decode``; transformers with ``chunk_length_s=None, normalize=False``) and the
segmented coding with loudness scales (the config's ``segments``; transformers' default ``encode`` /
``decode``, ``audio_scales``)."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.modalities.audio_segments import decode_segments, encode_segments
from tests.conftest import randomised
from tests.hf_reference import fill_codebooks, flushed_one_thread, padded, save, written

transformers = pytest.importorskip("transformers")

# facebook/encodec_48khz's config (transformers' conversion script) at an eighth of the width, 32 codes
ENCODEC_48K = {"upsampling_ratios": [8, 5, 4, 2], "target_bandwidths": [3.0, 6.0], "sampling_rate": 48_000,
               "audio_channels": 2, "use_causal_conv": False, "norm_type": "time_group_norm", "normalize": True,
               "chunk_length_s": 1.0, "overlap": 0.01, "num_filters": 4, "hidden_size": 16, "codebook_size": 32}
LENGTHS = [100_001, 48_100, 9_601, 963]  # 3 segments; a segment and a 580-sample one; one; shorter than a segment


pytestmark = pytest.mark.usefixtures("flush_denormals")  # tests/conftest.py: one thread, denormals flushed


def stereo_clips(speech_clips: list[torch.Tensor]) -> list[torch.Tensor]:
    """Stereo clips (2, n) of ``LENGTHS`` from speech: the right channel a delayed, quieter copy; the second item
    quiet (its own scales)."""
    speech = torch.cat(speech_clips, dim=-1)[0]
    starts = [0, 101_000, 150_000, 161_000]
    clips = [torch.stack([speech[o : o + n], 0.6 * speech[o + 40 : o + 40 + n]]) for o, n in zip(starts, LENGTHS)]
    clips[1] = 0.05 * clips[1]
    return clips


@pytest.fixture(scope="module")
def reference(speech_clips, tmp_path_factory):
    """transformers' EncodecModel with the 48 kHz config (random weights, biases spread, codebooks filled at the
    scale of the latents of other speech, output norm scaled into [-1, 1]), saved as the hub serves it."""
    torch.manual_seed(0)
    ref = randomised(transformers.EncodecModel(transformers.EncodecConfig(**ENCODEC_48K)))
    speech = torch.cat(speech_clips, dim=-1)[0, -96_000:]
    with flushed_one_thread(), torch.no_grad():
        latents = ref.encoder(torch.stack([speech, speech.flip(0)])[None] / speech.pow(2).mean().sqrt())
        fill_codebooks([layer.codebook for layer in ref.quantizer.layers], rearrange(latents, "1 d n -> n d"))
        last = ref.decoder.layers[-1].norm
        last.weight.fill_(0.1)
        last.bias.mul_(0.1)
    return ref, save(ref, tmp_path_factory.mktemp("encodec48") / "encodec_48khz")


def test_transformers_encodec48_whole_clips(reference, speech_clips, tmp_path, capsys):
    ref, folder = reference
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    audio = tok.modality
    assert (audio.sample_rate, audio.channels, audio.hop_length, tok.quantizer.depth) == (48_000, 2, 320, 8)
    assert tok.config["segments"] == {"seconds": 1.0, "overlap": 0.01, "normalize": True}
    assert not tok.encoder.causal and tok.config["encoder"]["conv_norm"] == "time_group"
    clips = stereo_clips(speech_clips)
    batch, lengths = padded(clips)
    ref.config.chunk_length_s, ref.config.normalize = None, False  # transformers' whole-clip form
    try:
        for bandwidth, depth in ((6.0, 8), (3.0, 4)):
            ids = tok.encode(batch, lengths, depth=depth)
            decoded = tok.decode(ids, lengths=lengths)
            distinct = set()
            for b, clip in enumerate(clips):
                with torch.no_grad():
                    out = ref.encode(clip[None], bandwidth=bandwidth)
                    expected = ref.decode(out.audio_codes, out.audio_scales).audio_values[0]
                codes = out.audio_codes[0, 0].T
                frames = audio.num_frames(clip.shape[-1])
                assert codes.shape == (frames, depth) and torch.equal(ids[b, :frames], codes), f"item {b}"
                distinct |= set(codes[:, 0].tolist())
                assert expected.abs().max() < 1
                n = clip.shape[-1]
                assert (decoded[b, :, :n] - expected[:, :n]).abs().max() < 1e-4, f"item {b}"
            assert len(distinct) > 16, f"only {len(distinct)} distinct codes at level 0"
    finally:
        ref.config.chunk_length_s, ref.config.normalize = 1.0, True


def test_transformers_encodec48_segments_with_scales(reference, speech_clips):
    ref, folder = reference
    tok = convert("transformers", folder)
    clips = stereo_clips(speech_clips)
    batch, lengths = padded(clips)
    for bandwidth, depth in ((6.0, 8), (3.0, 4)):
        rows, layout, items = tok.modality.encode_items(tok, batch, lengths, depth=depth)  # what discotok encode stores
        assert layout is None
        for b, clip in enumerate(clips):
            with torch.no_grad():
                out = ref.encode(clip[None], bandwidth=bandwidth)
                expected = ref.decode(out.audio_codes, out.audio_scales,
                                      last_frame_pad_length=out.last_frame_pad_length).audio_values
            codes = rearrange(out.audio_codes[:, 0], "k q n -> (k n) q")
            codes = codes[: codes.shape[0] - out.last_frame_pad_length]
            scales = torch.cat(out.audio_scales).flatten()
            assert len(out.audio_scales) == [3, 2, 1, 1][b]
            assert torch.equal(rows[b], codes) and items[b]["frames"] == codes.shape[0], f"item {b}"
            assert torch.allclose(torch.tensor(items[b]["scales"]), scales, rtol=1e-6, atol=0), f"item {b}"
            segments = encode_segments(tok, clip[None], depth=depth)  # the same coding alone, per segment
            assert torch.equal(torch.cat(segments.ids, dim=1)[0], codes)
            assert torch.allclose(segments.scales[0], scales, rtol=1e-6, atol=0)
            decoded = decode_segments(tok, segments)
            assert decoded.shape == expected.shape, f"item {b}"
            assert (decoded - expected).abs().max() < 1e-4, f"item {b}"
        assert max(items[1]["scales"]) < 0.1 * min(items[0]["scales"])  # the quiet item's own scales


def test_transformers_encodec_variants(reference, tmp_path):
    ref, folder = reference
    config = ref.config.to_dict()
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    whole = convert("transformers", written(tmp_path / "whole", state, config, chunk_length_s=None, normalize=False))
    assert "segments" not in whole.config and "segments" not in whole.config["metadata"]
    one = convert("transformers", written(tmp_path / "one", state, config, chunk_length_s=None))
    assert one.config["segments"] == {"seconds": None, "overlap": 0.0, "normalize": True}
    with pytest.raises(ConvertError, match="chunk_length_s 1.0 and no overlap"):
        convert("transformers", written(tmp_path / "no_overlap", state, config, overlap=None))
    with pytest.raises(ConvertError, match="time_group_norm and use_causal_conv"):
        convert("transformers", written(tmp_path / "causal", state, config, use_causal_conv=True))
    with pytest.raises(ConvertError, match="norm_type 'batch_norm'"):
        convert("transformers", written(tmp_path / "bn", state, config, norm_type="batch_norm"))
