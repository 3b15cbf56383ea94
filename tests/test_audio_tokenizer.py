"""The audio tokenizer: batch invariance, causal prefixes, lengths, bit rates, save/load, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from discotok import Layout, Tokenizer, TokenizerLoadError
from discotok.registry import ConfigError
from tests.conftest import AUDIO_RATE, tiny_audio_config

HOP = 64


def tokenizer(**kwargs) -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer.from_config(tiny_audio_config(**kwargs)).eval()


def padded(clips: list[torch.Tensor], lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips cut to ``lengths`` (none a multiple of the hop) and zero-padded into one batch."""
    longest = max(lengths)
    x = torch.stack([F.pad(c[:, :n], (0, longest - n)) for c, n in zip(clips, lengths)])
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("sequence", ["lstm", "transformer"])
def test_padded_batch_gives_each_item_its_own_ids(sequence, speech_clips):
    tok = tokenizer(sequence=sequence)
    lengths = [9001, 5555, 3333, 1201]
    x, lens = padded(speech_clips[:4], lengths)
    ids = tok.encode(x, lens)
    assert ids.shape == (4, tok.modality.num_frames(9001), 3)
    for b, n in enumerate(lengths):
        alone = tok.encode(x[b : b + 1, :, :n])
        assert alone.shape[1] == tok.modality.num_frames(n) == math.ceil(n / HOP)
        assert torch.equal(ids[b, : alone.shape[1]], alone[0]), f"item {b} ({sequence})"
    # Without lengths the padding leaks into the short items' last frames: the masking is what makes them equal.
    unmasked = tok.encode(x)
    n = tok.modality.num_frames(lengths[-1])
    assert not torch.equal(unmasked[-1, :n], tok.encode(x[-1:, :, : lengths[-1]])[0])


def test_padded_batch_decodes_like_each_item_alone(speech_clips):
    tok = tokenizer()
    lengths = [7000, 2500, 4444]
    x, lens = padded(speech_clips[:3], lengths)
    ids = tok.encode(x, lens)
    waves = tok.decode(ids, lengths=lens)
    for b, n in enumerate(lengths):
        alone = tok.decode(ids[b : b + 1, : tok.modality.num_frames(n)])
        torch.testing.assert_close(waves[b, :, :n], alone[0, :, :n], atol=1e-5, rtol=0)
        assert waves[b, :, n:].abs().max() == 0


@pytest.mark.parametrize("decoder", ["audio", "vocos"])
@pytest.mark.parametrize("samples", [64, 1000, 4096])
def test_decode_length_is_frames_times_hop(decoder, samples, speech_clips):
    tok = tokenizer(decoder=decoder)
    ids, layout = tok.encode(speech_clips[0][None, :, :samples], return_layout=True)
    frames = math.ceil(samples / HOP)
    assert layout == Layout("frames", (frames,)) and ids.shape[1] == frames
    wave = tok.decode(ids)
    assert wave.shape == (1, 1, frames * tok.modality.hop_length) and wave.abs().max() <= 1
    tok.train()
    out = tok(speech_clips[0][None, :, :samples])
    assert out.x_hat.shape == (1, 1, samples)


@pytest.mark.parametrize("sequence", ["lstm", "transformer"])
def test_causal_prefix_does_not_change_when_audio_is_appended(sequence, speech_clips):
    tok = tokenizer(causal=True, sequence=sequence)
    full = speech_clips[1][None, :, : 40 * HOP]
    ids = tok.encode(full)
    wave = tok.decode(ids)
    for frames in (1, 7, 25):
        prefix = tok.encode(full[..., : frames * HOP])
        assert torch.equal(prefix, ids[:, :frames]), frames
        torch.testing.assert_close(tok.decode(prefix), wave[..., : frames * HOP], atol=1e-5, rtol=0)
    # The non-causal model's early frames do look ahead.
    lookahead = tokenizer(causal=False, sequence=sequence)
    z_full = lookahead.encoder(full).z[:, :7]
    z_prefix = lookahead.encoder(full[..., : 7 * HOP]).z
    assert not torch.allclose(z_full, z_prefix)


def test_bit_rates_match_the_ids(speech_clips):
    tok = tokenizer()
    assert tok.modality.hop_length == HOP and tok.modality.frames_per_second == AUDIO_RATE / HOP == 250
    bits_per_level = math.log2(tok.codebook_size)  # rvq: 3 levels of 32 codes
    assert tok.modality.bit_rates == {k: pytest.approx(250 * k * bits_per_level) for k in (1, 2, 3)}
    seconds = 2.0
    x = speech_clips[0][None, :, : int(seconds * AUDIO_RATE)]
    for depth in (1, 2, 3):
        ids = tok.encode(x, depth=depth)
        assert ids.shape == (1, int(seconds * 250), depth)
        assert ids.numel() * bits_per_level == pytest.approx(tok.modality.bits_per_second(depth) * seconds)
        assert tok.decode(ids).shape[-1] == x.shape[-1]
    assert tok.modality.bits_per_second() == tok.modality.bits_per_second(3)
    fsq = tokenizer(quantizer="fsq")
    assert fsq.modality.bit_rates == {1: pytest.approx(250 * math.log2(125))}
    with pytest.raises(ValueError, match="single level"):
        fsq.encode(x, depth=1)


@pytest.mark.parametrize("quantizer", ["rvq", "fsq"])
def test_save_load_round_trip(quantizer, tmp_path, speech_clips):
    tok = tokenizer(quantizer=quantizer).train()
    x = torch.stack([c[:, :3000] for c in speech_clips[:3]])
    tok(x)  # a training-mode pass moves k-means / EMA buffers
    tok.eval()
    ids = tok.encode(x)
    loaded = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    audio = loaded.modality
    assert (audio.name, audio.sample_rate, audio.channels, audio.hop_length) == ("audio", AUDIO_RATE, 1, HOP)
    assert torch.equal(loaded.encode(x), ids)
    torch.testing.assert_close(loaded.decode(ids), tok.decode(ids), atol=1e-6, rtol=0)


def test_stereo(speech_clips):
    tok = tokenizer(channels=2)
    x = torch.stack([torch.cat([c[:, :3000], 0.5 * c[:, :3000]]) for c in speech_clips[:2]])
    assert tok.decode(tok.encode(x)).shape == (2, 2, 3008)
    with pytest.raises(ValueError, match=r"\(B, 2, T\)"):
        tok.encode(x[:, :1])


def test_bad_waveforms_lengths_and_ids_are_refused():
    tok = tokenizer()
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        tok.encode(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="floating point"):
        tok.encode(torch.zeros(1, 1, 1000, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.1000"):
        tok.encode(torch.zeros(2, 1, 1000), torch.tensor([1000, 1001]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        tok.encode(torch.zeros(2, 1, 1000), torch.tensor([5]))
    with pytest.raises(ValueError, match=r"\[0, 31\]"):
        tok.decode(torch.full((1, 10, 3), 32))
    with pytest.raises(ValueError, match=r"1 <= depth <= 3"):
        tok.decode(torch.zeros(1, 10, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="depth must lie in 1..3"):
        tok.encode(torch.zeros(1, 1, 640), depth=4)
    assert tok.modality.name == "audio" and not hasattr(tok.modality, "num_tokens")  # frames follow the input


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.pop("sample_rate"), "positive integer 'sample_rate'"),
        (lambda c: c.update(channels=0), "positive integer 'channels'"),
        (lambda c: c.update(modality="video"), "'modality' must be one of"),
        (lambda c: c["decoder"].update(out_channels=2), "channels is 1"),
        (lambda c: c.update(decoder={**tiny_audio_config(decoder="vocos")["decoder"], "hop_length": 128}), "hop_length"),
    ],
)
def test_inconsistent_audio_configs_are_refused(mutate, message, tmp_path):
    config = tiny_audio_config()
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        Tokenizer.from_config(config)
    path = Tokenizer.from_config(tiny_audio_config()).save_pretrained(tmp_path / "tok")
    (path / "config.json").write_text(__import__("json").dumps(config))
    with pytest.raises(TokenizerLoadError, match=message):
        Tokenizer.from_pretrained(path)


def test_image_tokenizers_refuse_lengths(photo_batch):
    from tests.conftest import tiny_tokenizer_config

    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq")).eval()
    with pytest.raises(ValueError, match="audio"):
        tok.encode(photo_batch, torch.tensor([1] * 8))
    assert tok.modality.name == "image" and not hasattr(tok.modality, "hop_length")
