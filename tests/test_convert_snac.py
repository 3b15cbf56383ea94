"""``discotok convert snac``: a SNAC saved as the publisher ships it (config.json + pytorch_model.bin, random weights)
gives the reference's ids at every rate and its audio under the same noise seed; bad sources get clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.quantizers.multirate import join_rates, split_rates
from discotok.tokenizers.hub import publisher_checkpoint
from tests.conftest import randomised

snac = pytest.importorskip("snac")

# The hub's structures at small widths: 24 kHz (no attention), 32 kHz (attention window 32, four rates), and a
# plain variant (no depthwise convolutions, no noise) with a small window.
CONFIGS = {
    "24khz": {"sampling_rate": 24000, "encoder_dim": 8, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 128,
              "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
              "vq_strides": [4, 2, 1], "noise": True, "depthwise": True},
    "32khz": {"sampling_rate": 32000, "encoder_dim": 4, "encoder_rates": [2, 3, 8, 8], "decoder_dim": 128,
              "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32, "codebook_size": 4096, "codebook_dim": 8,
              "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True},
    "plain": {"sampling_rate": 16000, "encoder_dim": 16, "encoder_rates": [4, 4], "decoder_dim": 128,
              "decoder_rates": [4, 4], "attn_window_size": 4, "codebook_size": 64, "codebook_dim": 4,
              "vq_strides": [2, 1], "noise": False, "depthwise": False},
}
LENGTHS = {"24khz": [9001, 6143, 4097], "32khz": [23001, 12001, 11111], "plain": [1001, 700, 333]}


def reference(kind: str, seed: int = 0) -> torch.nn.Module:
    """A small SNAC with random weights, Snake slopes and biases (its codebooks start random already)."""
    torch.manual_seed(seed)
    return randomised(snac.SNAC(**CONFIGS[kind]), seed)


def spread(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """``model`` with each level's input projection whitened on the latents of ``x`` (mean 0, identity covariance),
    as training spreads codes: the latents of a random encoder vary little around a large mean, which would
    give a handful of distinct ids."""
    with torch.no_grad():
        residual = model.encoder(model.preprocess(x))
        for level in model.quantizer.quantizers:
            projected = level.in_proj(F.avg_pool1d(residual, level.stride, level.stride))
            projected = rearrange(projected, "b d t -> (b t) d")
            values, vectors = torch.linalg.eigh(torch.cov(projected.T))
            white = vectors @ torch.diag(values.clamp(min=1e-3 * float(values.max())).rsqrt()) @ vectors.T
            level.in_proj.weight = (white @ level.in_proj.weight.squeeze(-1))[..., None]
            level.in_proj.bias.copy_(white @ (level.in_proj.bias - projected.mean(0)))
            residual = residual - level(residual)[0]
    return model


def saved(model: torch.nn.Module, config: dict, folder: Path) -> Path:
    """The model as the publisher ships it on the hub: a folder with config.json and pytorch_model.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def clips_of(speech_clips: list[torch.Tensor], lengths: list[int]) -> list[torch.Tensor]:
    """Speech clips cut (or tiled) to ``lengths`` samples."""
    return [c.repeat(1, -(-n // c.shape[-1]))[:, :n] for c, n in zip(speech_clips, lengths)]


def padded(clips: list[torch.Tensor], extra: int = 0) -> torch.Tensor:
    batch = torch.zeros(len(clips), 1, max(c.shape[-1] for c in clips) + extra)
    for b, clip in enumerate(clips):
        batch[b, :, : clip.shape[-1]] = clip
    return batch


@pytest.fixture(autouse=True)
def plain_torchscript():
    """SNAC's Snake is TorchScript: its fusing executor recompiles for every new length (seconds on a busy CPU)."""
    with torch.jit.optimized_execution(False):
        yield


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_converted_snac_gives_the_reference_ids_and_audio(kind, tmp_path, speech_clips, capsys):
    config = CONFIGS[kind]
    lengths = LENGTHS[kind]
    clips = clips_of(speech_clips, lengths)
    ref = spread(reference(kind), padded(clips))
    rc = main(["convert", "snac", str(saved(ref, config, tmp_path / "hub")), "-o", str(tmp_path / "tok")])
    assert rc == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    strides, hop = config["vq_strides"], math.prod(config["encoder_rates"])
    multiple = hop * math.lcm(max(strides), config["attn_window_size"] or 1)  # SNAC's own padding
    assert tok.modality.hop_length == hop * max(strides) and tok.modality.length_multiple == multiple
    assert all(n % hop for n in lengths)
    ids = tok.encode(padded(clips), torch.tensor(lengths))
    assert ids.shape[-1] == sum(max(strides) // s for s in strides)
    # the same ids with more zero padding after the batch
    more = tok.encode(padded(clips, extra=2 * multiple + 5), torch.tensor(lengths))
    seen: list[set] = [set() for _ in strides]
    with torch.no_grad():
        for b, clip in enumerate(clips):
            frames = tok.modality.num_frames(clip.shape[-1])
            assert frames * tok.modality.hop_length == math.ceil(clip.shape[-1] / multiple) * multiple
            codes = ref.encode(clip[None])
            ours = ids[b : b + 1, :frames]
            assert all(torch.equal(a, c) for a, c in zip(split_rates(ours, strides), codes, strict=True)), f"item {b}"
            assert torch.equal(join_rates(codes, strides), ours) and torch.equal(more[b : b + 1, :frames], ours)
            for level, code in zip(seen, codes):
                level.update(code.flatten().tolist())
            torch.manual_seed(b)
            expected = ref.decode(codes)
            torch.manual_seed(b)
            decoded = tok.decode(ours)
            assert decoded.shape == expected.shape == (1, 1, frames * tok.modality.hop_length)
            assert (decoded - expected).abs().max() < 1e-4, f"item {b}"
            if config["noise"] and b == 0:  # the noise matters: another seed gives another waveform
                torch.manual_seed(b + 100)
                assert (tok.decode(ours) - expected).abs().max() > 1e-3
        count = [sum(tok.modality.num_frames(n) for n in lengths) * max(strides) // s for s in strides]
        size = config["codebook_size"]
        assert all(len(s) >= max(2, min(n, size) // 5) for s, n in zip(seen, count)), ([len(s) for s in seen], count)
        for depth in range(1, len(strides)):
            shallow = tok.encode(clips[0][None], depth=depth)
            assert torch.equal(shallow, ids[:1, : shallow.shape[1], : tok.quantizer.columns(depth)])


def test_multirate_layout_and_bit_rates():
    codes = [torch.arange(2)[None], torch.arange(10, 14)[None], torch.arange(20, 28)[None]]
    ids = join_rates(codes, [4, 2, 1])
    assert ids.tolist() == [[[0, 10, 11, 20, 21, 22, 23], [1, 12, 13, 24, 25, 26, 27]]]
    assert [c.tolist() for c in split_rates(ids, [4, 2, 1])] == [c.tolist() for c in codes]
    assert [c.tolist() for c in split_rates(ids[..., :3], [4, 2, 1])] == [c.tolist() for c in codes[:2]]
    with pytest.raises(ValueError, match=r"ids of 5 columns are no depth .* \[1, 3, 7\]"):
        split_rates(ids[..., :5], [4, 2, 1])
    with pytest.raises(ValueError, match="must be"):
        join_rates([codes[0], codes[1][:, :3]], [4, 2, 1])
    # The published models' bit rates (SNAC's README: 0.98, 1.9 and 2.6 kbps), from our structure at small widths
    from discotok.convert.snac import DEFAULTS, snac_config

    for rate, rates, strides, window, kbps in ((24000, [2, 4, 8, 8], [4, 2, 1], None, 0.984375),
                                               (32000, [2, 3, 8, 8], [8, 4, 2, 1], 32, 1.875),
                                               (44100, [2, 3, 8, 8], [8, 4, 2, 1], 32, 2.583984375)):
        kwargs = DEFAULTS | {"sampling_rate": rate, "encoder_dim": 4, "encoder_rates": rates, "decoder_dim": 64,
                             "decoder_rates": rates[::-1], "attn_window_size": window, "vq_strides": strides}
        tok = Tokenizer.from_config(snac_config(kwargs))
        assert tok.modality.bits_per_second() == pytest.approx(1e3 * kbps)
        assert tok.modality.bits_per_second(1) == pytest.approx(1e3 * kbps / tok.quantizer.columns())
        assert tok.modality.rate_figures((5, 3), (1,))["depth"] == 2
        with pytest.raises(ValueError, match=r"\(\[1, 3, 7(, 15)?\] id columns at these depths\)"):
            tok.decode(torch.zeros(1, 2, 2, dtype=torch.long))
        # ids of fewer tokens than an attention window (a prefix, not what encode gives) still decode: the window is
        # zero-padded and the padding hidden from attention; so are the frames past an item's length
        ids = torch.randint(0, 4096, (2, 3, tok.quantizer.columns()))
        wave = tok.decode(ids, lengths=torch.tensor([3, 1]) * tok.modality.hop_length)
        assert wave.shape == (2, 1, 3 * tok.modality.hop_length) and bool(wave.isfinite().all())


def test_bad_sources_get_clear_errors(tmp_path, capsys):
    config = CONFIGS["plain"]
    good = saved(reference("plain"), config, tmp_path / "good")
    assert publisher_checkpoint(good) == ("snac", good / "config.json")
    with pytest.raises(ConvertError, match="no config.json"):
        convert("snac", tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConvertError, match="config.json: not a JSON object"):
        convert("snac", broken)
    (broken / "config.json").write_text(json.dumps(config | {"model_type": "dac"}))
    with pytest.raises(ConvertError, match=r"not a SNAC config: unknown keys \['model_type'\]"):
        convert("snac", broken)
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match="no weights"):
        convert("snac", broken)
    (broken / "pytorch_model.bin").write_bytes((good / "pytorch_model.bin").read_bytes()[:3000])
    with pytest.raises(ConvertError, match="pytorch_model.bin: not a readable SNAC pytorch_model.bin"):
        convert("snac", broken / "pytorch_model.bin")
    torch.save([torch.zeros(1)], broken / "pytorch_model.bin")
    with pytest.raises(ConvertError, match="the weights are not a state dict of tensors"):
        convert("snac", broken)
    (broken / "pytorch_model.bin").write_bytes((good / "pytorch_model.bin").read_bytes())
    (broken / "config.json").write_text(json.dumps(config | {"latent_dim": 32}))
    with pytest.raises(ConvertError, match="latent_dim 32 differs from the encoder's width 64"):
        convert("snac", broken)
    mismatched = saved(reference("plain"), config | {"encoder_dim": 32}, tmp_path / "mismatched")
    state = torch.load(mismatched / "pytorch_model.bin", weights_only=True)
    del state["decoder.model.0.bias"]
    torch.save(state, mismatched / "pytorch_model.bin")
    with pytest.raises(ConvertError) as err:
        convert("snac", mismatched)
    message = str(err.value)
    assert "missing: decoder.stem.conv.bias" in message
    assert ("encoder.head.conv.bias (the source's encoder.block.4.bias) (64,) (expected (128,))" in message
            and "encoder.sequence.net.to_qkv.weight (the source's encoder.block.3.to_qkv.weight) (192, 64) "
            "(expected (384, 128))" in message), message
    rc = main(["convert", "snac", str(mismatched), "-o", str(tmp_path / "out")])
    text = capsys.readouterr().err
    assert rc == 1 and text.startswith("discotok convert: error:") and text.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_published_24khz_structure_at_full_size(tmp_path, speech_clips):
    """hubertsiuzdak/snac_24khz's config.json as published (19.84 M parameters), random weights: the same ids and
    audio on a short clip."""
    config = {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
              "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
              "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}
    clip = clips_of(speech_clips, [3001])[0][None]
    torch.manual_seed(0)
    ref = spread(randomised(snac.SNAC(**config)), clips_of(speech_clips, [20000])[0][None])
    assert sum(p.numel() for p in ref.parameters()) == 19_842_914
    tok = convert("snac", saved(ref, config, tmp_path / "snac_24khz"))
    with torch.no_grad():
        codes = ref.encode(clip)
        ids = tok.encode(clip)
        assert ids.shape == (1, 2, 7) and [c.shape[-1] for c in codes] == [2, 4, 8]
        assert all(torch.equal(a, c) for a, c in zip(split_rates(ids, config["vq_strides"]), codes, strict=True))
        assert len(set(codes[-1].flatten().tolist())) > 4
        torch.manual_seed(3)
        expected = ref.decode(codes)
        torch.manual_seed(3)
        assert (tok.decode(ids) - expected).abs().max() < 1e-4


def test_extraction_decoding_and_export_take_the_multirate_ids(tmp_path, speech_folder):
    """``discotok encode`` (extraction), ``decode``, ``eval`` and ``export.flatten`` handle SNAC's (B, tokens, columns)
    ids as any residual ids: each item's stored ids are its ids encoded alone, rates count every code."""
    from discotok.data.audio import load_audio
    from discotok.eval import evaluate
    from discotok.export import flatten, unflatten
    from discotok.extraction import decode_ids, extract
    from discotok.io import load_ids

    config = CONFIGS["plain"]
    tok = convert("snac", saved(reference("plain"), config, tmp_path / "hub"))
    report = extract(tok, speech_folder, tmp_path / "ids", shard_size=3, batch_size=2, progress=False, workers=0)
    manifest = report.manifest
    assert manifest["depth"] == 2 and manifest["ids_shape"][-1] == 3 and manifest["bits_per_token"] == 3 * 6
    assert manifest["bits_per_second"] == pytest.approx(config["sampling_rate"] / 32 * 3 * 6)
    loaded = load_ids(tmp_path / "ids")
    for item, row, frames in zip(manifest["items"], loaded.ids, loaded.frames, strict=True):
        wave, _ = load_audio(speech_folder / item["source"], config["sampling_rate"], 1)
        assert frames == tok.modality.num_frames(wave.shape[-1])
        assert torch.equal(torch.from_numpy(row[:frames]), tok.encode(wave[None])[0]), item["source"]
    paths = decode_ids(tok, tmp_path / "ids", tmp_path / "wavs", progress=False)
    assert len(paths) == len(manifest["items"])
    report = evaluate([tok], speech_folder, tmp_path / "eval", max_seconds=0.3, batch_size=2, progress=False,
                      baselines=False)
    assert [r["depth"] for r in report["results"]] == [1, 2]
    assert [r["bits_per_second"] for r in report["results"]] == [pytest.approx(16000 / 32 * 6 * c) for c in (1, 3)]
    ids = tok.encode(clips_of([torch.randn(1, 500) * 0.1], [500])[0][None])
    tokens = flatten(ids, config["codebook_size"])
    assert tokens.shape == (1, ids.shape[1] * 3) and int(tokens.max()) < 3 * config["codebook_size"]
    assert torch.equal(unflatten(tokens, 3, config["codebook_size"]), ids)


@pytest.mark.slow
def test_two_gan_steps_from_a_converted_snac(tmp_path, speech_folder):
    """``discotok train init_from=`` a converted SNAC (attention, two rates of ids): two GAN steps start from its
    weights and move them a little (slow: 35 s, the GAN experiment's discriminators and validation)."""
    from tests.test_finetune import finetune

    config = CONFIGS["plain"]
    start = convert("snac", saved(reference("plain"), config, tmp_path / "hub"), tmp_path / "snac")
    summary = finetune(tmp_path, tmp_path / "snac", config["sampling_rate"], speech_folder)
    assert summary["steps"] == 2 and summary["init_from"] == str(tmp_path / "snac")
    tuned = Tokenizer.from_pretrained(summary["tokenizer_dir"])
    before, after = dict(start.named_parameters()), dict(tuned.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("quantizer.levels.1.") for k in moved) and any(".sequence.net." in k for k in moved)
    assert max(float((after[k] - before[k]).abs().max() / before[k].abs().max().clamp(min=1e-6)) for k in moved) < 0.5
