"""``discotok convert transformers`` on Mimi: a small transformers ``MimiModel`` (random weights, random non-zero
codebooks fitted residual by residual, offline) gives the reference's ids and audio item by item inside padded
batches of any lengths, at every depth, chunk by chunk too; broken sources are refused with the reason."""

from __future__ import annotations

import json

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.hf_reference import padded, save, written
from tests.test_streaming import streamed_audio, streamed_ids

transformers = pytest.importorskip("transformers")

SMALL = {"hidden_size": 32, "num_filters": 4, "upsampling_ratios": [4, 3, 2], "num_residual_layers": 2,
         "codebook_size": 64, "codebook_dim": 16, "vector_quantization_hidden_dimension": 16, "num_quantizers": 4,
         "num_semantic_quantizers": 1, "upsample_groups": 32, "num_hidden_layers": 2, "intermediate_size": 64,
         "num_attention_heads": 4, "num_key_value_heads": 4, "sliding_window": 6}
LENGTHS = [4000, 2777, 963, 5]  # hop 48: none a multiple of it, the last shorter than one


@torch.no_grad()
def randomised_mimi(model: torch.nn.Module, speech: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """A fresh ``MimiModel`` made a meaningful reference: LayerScales, LayerNorms and biases spread (the transformers
    would be near identities at LayerScale 0.01), every codebook (all zero when built) filled level by level with
    random codes at the scale of the residuals of the latents of ``speech`` (B, 1, T) (each dimension's mean and
    spread) and a random cluster usage, and the output scaled into [-1, 1] (our decode clamps).

    Codes copied from residuals (plus a little noise) would sit in tight clusters around the few frames of
    ``speech``; the distances of a residual to the codes of one cluster then tie within float rounding, and
    transformers' ``cdist`` in float32 picks among them differently (measured on the full-size Mimi: ours
    agreed with float64 distances on every tie, transformers' on a third of them at level 7)."""
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale.scale"):
            p.uniform_(0.5, 1.5)
        elif "layernorm" in name:
            p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.05)
    latents = model.encoder(speech).latents
    quantizer = model.quantizer
    for group in (quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer):
        residual = group.input_proj(latents).transpose(1, 2).reshape(-1, group.input_proj.out_channels)
        for layer in group.layers:
            book = layer.codebook
            size = book.embed_sum.shape[0]
            codes = residual.mean(0) + residual.std(0) * torch.randn(size, residual.shape[1])
            usage = torch.rand(size) + 0.5
            book.cluster_usage.copy_(usage)
            book.embed_sum.copy_(codes * usage[:, None])
            book._embed = None  # transformers caches embed_sum / cluster_usage
            residual = residual - book.decode(book.encode(residual))
    audio = model.decode(model.encode(speech).audio_codes).audio_values
    last = model.decoder.decoder_seanet.layers[-1].conv
    last.weight.mul_(0.5 / audio.abs().max())
    last.bias.mul_(0.5 / audio.abs().max())
    return model.eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory, speech_clips):
    """The reference, its directory and its clips (LENGTHS samples of speech)."""
    clips = [c[:, :n] for c, n in zip(speech_clips, LENGTHS)]
    torch.manual_seed(1)  # a module fixture is built before the per-test seed; with this one the nearest code of
    # every level of every token is nearer than the second by at least 5e-4 of the distance (float64)
    ref = transformers.MimiModel(transformers.MimiConfig(**SMALL)).eval()
    ref = randomised_mimi(ref, padded([c[:, :2700] for c in speech_clips[4:6]])[0])  # codes fitted on other clips
    return ref, save(ref, tmp_path_factory.mktemp("mimi") / "mimi_small"), clips


def test_converted_mimi_gives_the_reference_ids_and_audio(small, tmp_path, capsys):
    ref, folder, clips = small
    assert main(["convert", "transformers", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.quantizer.depth) == (24_000, 48, 4)
    assert tok.modality.bits_per_second(1) == 24_000 / 48 * 6
    batch, lengths = padded(clips)
    ids = tok.encode(batch, lengths)
    decoded = tok.decode(ids, lengths=lengths)
    worst = 0.0
    with torch.no_grad():
        for b, clip in enumerate(clips):
            frames = tok.modality.num_frames(clip.shape[-1])
            codes = ref.encode(clip[None]).audio_codes[0]  # (depth, frames)
            assert codes.shape[-1] == frames
            assert torch.equal(ids[b, :frames], codes.T), f"item {b}"
            assert torch.equal(tok.encode(clip[None])[0], codes.T), f"item {b} alone"
            expected = ref.decode(codes[None]).audio_values[0].clamp(-1, 1)
            assert expected.shape[-1] == frames * 48  # Mimi decodes whole hops; we cut to the input
            n = clip.shape[-1]
            worst = max(worst, (decoded[b, :, :n] - expected[:, :n]).abs().max().item())
            alone = tok.decode(ids[b : b + 1, :frames])[0]
            worst = max(worst, (alone - expected).abs().max().item())
    assert worst < 1e-4
    for level in range(4):  # the codebooks are not trivial: every level uses many codes
        assert ids[..., level].unique().numel() >= 24, f"level {level}"


def test_depths_are_transformers_num_quantizers(small):
    ref, folder, clips = small
    tok = convert("transformers", folder)
    with torch.no_grad():
        for depth in (1, 2, 3):
            codes = ref.encode(clips[0][None], num_quantizers=depth).audio_codes
            ids = tok.encode(clips[0][None], depth=depth)
            assert ids.shape[-1] == depth and torch.equal(ids[0], codes[0].T)
            expected = ref.decode(codes).audio_values.clamp(-1, 1)
            assert (tok.decode(ids) - expected[..., : tok.decode(ids).shape[-1]]).abs().max() < 1e-4


@pytest.fixture
def one_thread():
    """Streaming runs many tiny operations, which threads only slow down (by 40x on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("source", ["transformers", "mimi"])
def test_mimi_streams_exactly(small, source, one_thread):
    """Chunked encoding and decoding give the offline ids and audio, with either reference's treatment of the end
    (1500 samples: not a multiple of the hop; a context of 6 frames for transformers' model)."""
    from tests.fixtures.make_mimi_moshi import CHECKPOINT

    tok = convert(source, small[1] if source == "transformers" else CHECKPOINT)
    x = small[2][0][None, :, :1500]
    offline = tok.encode(x)
    for sizes in ([1, 7, 64, 333], [48], [1000]):
        assert torch.equal(streamed_ids(tok, x, sizes), offline)
    assert (streamed_audio(tok, offline, [1, 3, 2]) - tok.decode(offline)).abs().max() < 1e-5
    stream = tok.modality.encode_stream()  # one hop in, its token out
    assert [stream.push(x[..., i * 48 : (i + 1) * 48]).shape[1] for i in range(4)] == [1, 1, 1, 1]


def test_broken_mimi_sources_are_refused(small, tmp_path):
    from safetensors.torch import load_file

    folder = small[1]
    config = json.loads((folder / "config.json").read_text())
    state = load_file(folder / "model.safetensors")

    edited = {k: v for k, v in state.items() if k != "encoder_transformer.layers.1.self_attn.k_proj.weight"}
    edited["quantizer.acoustic_residual_vector_quantizer.layers.7.codebook.embed_sum"] = torch.zeros(64, 16)
    with pytest.raises(ConvertError, match=r"1 missing: encoder.transformer.blocks.1.attn.qkv.weight; 3 unexpected: "
                                           r".*encoder_transformer.layers.1.self_attn.q_proj.weight"):
        convert("transformers", written(tmp_path / "edited", edited, config))
    with pytest.raises(ConvertError, match=r"mis-shaped: decoder.transformer.blocks.0.fc1.weight"):
        convert("transformers", written(tmp_path / "wider", state, config, intermediate_size=128))
    with pytest.raises(ConvertError, match=r"a Mimi with \{'use_conv_shortcut': True\} is not converted"):
        convert("transformers", written(tmp_path / "shortcut", state, config, use_conv_shortcut=True))
    without = {k: v for k, v in state.items() if not k.startswith("downsample.")}
    with pytest.raises(ConvertError, match="not a Mimi with a frame-rate conversion: no tensor 'downsample.conv"):
        convert("transformers", written(tmp_path / "no_downsample", without, config))


def test_moshi_checkpoint_gives_moshis_ids_and_audio(tmp_path, capsys):
    """``discotok convert mimi``: moshi's own checkpoint and outputs (``tests/fixtures/make_mimi_moshi.py``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from tests.fixtures.make_mimi_moshi import CHECKPOINT, LENGTHS, REFERENCE, VERSION

    with safe_open(str(REFERENCE), framework="pt") as f:
        assert f.metadata()["moshi"] == VERSION
    reference = load_file(REFERENCE)
    assert main(["convert", "mimi", str(CHECKPOINT), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.quantizer.depth) == (24_000, 48, 4)
    clips = [reference[f"input.{i}"] for i in range(len(LENGTHS))]
    batch, lengths = padded(clips)
    ids = tok.encode(batch, lengths)
    decoded = tok.decode(ids, lengths=lengths)
    for b, clip in enumerate(clips):  # moshi zero-pads a clip to whole hops first
        codes, expected = reference[f"codes.{b}"], reference[f"audio.{b}"]
        frames, n = codes.shape[-1], clip.shape[-1]
        assert torch.equal(ids[b, :frames], codes.T), f"item {b}"
        assert (decoded[b, :, :n] - expected[:, :n]).abs().max() < 1e-4, f"item {b}"
        assert (tok.decode(ids[b : b + 1, :frames])[0] - expected).abs().max() < 1e-4, f"item {b}"
    assert min(ids[..., level].unique().numel() for level in range(4)) >= 12  # of 64, over 93 tokens
    state = load_file(CHECKPOINT)
    del state["decoder_transformer.transformer.layers.1.linear2.weight"]
    from safetensors.torch import save_file

    save_file(state, tmp_path / "edited.safetensors")
    with pytest.raises(ConvertError, match=r"edited.safetensors: .*1 missing: decoder.transformer.blocks.1.fc2.weight"):
        convert("mimi", tmp_path / "edited.safetensors")
    save_file({"encoder.model.0.conv.conv.weight": torch.zeros(4, 1, 7)}, tmp_path / "other.safetensors")
    with pytest.raises(ConvertError, match="not a moshi Mimi state dict"):
        convert("mimi", tmp_path / "other.safetensors")


@pytest.mark.slow
def test_full_size_mimi(tmp_path, speech_clips):
    """transformers' default architecture (kyutai/mimi's: 8 transformer layers of 512, ratios [8, 6, 5, 4]) with
    moshi's 8 levels: 72000 samples of speech, 38 tokens, decoded to 72960 samples (about 50 s on 2 busy cores)."""
    ref = transformers.MimiModel(transformers.MimiConfig(num_quantizers=8)).eval()
    ref = randomised_mimi(ref, padded([c[:, :24_000] for c in speech_clips[4:6]])[0])
    tok = convert("transformers", save(ref, tmp_path / "mimi"))
    assert (tok.modality.hop_length, tok.modality.frames_per_second, tok.quantizer.depth) == (1920, 12.5, 8)
    x = torch.cat(speech_clips, dim=-1).repeat(1, 4)[None, :, :72_000]
    with torch.no_grad():
        codes = ref.encode(x).audio_codes
        expected = ref.decode(codes).audio_values
    ids = tok.encode(x)
    assert ids.shape == (1, 38, 8) and torch.equal(ids[0], codes[0].T) and expected.shape[-1] == 72_960
    assert min(ids[..., level].unique().numel() for level in range(8)) >= 20
    assert (tok.decode(ids, size=(72_000,)) - expected[..., :72_000].clamp(-1, 1)).abs().max() < 1e-4


def test_mimi_recipe_composes_at_kyutais_size():
    """``experiment=mimi_24k``: the encoder=mimi, decoder=mimi and quantizer=split_rvq groups at kyutai/mimi's sizes."""
    from tests.test_audio_training import composed_audio

    cfg = composed_audio("mimi_24k")
    with torch.device("meta"):
        tok = Tokenizer.from_config(cfg)
    assert (tok.modality.sample_rate, tok.modality.hop_length, tok.quantizer.depth, tok.codebook_size) == (
        24_000, 1920, 8, 2048)
    assert tok.modality.bits_per_second() == pytest.approx(1100.0)
    params = sum(p.numel() for p in tok.parameters())  # moshi's get_mimi: 79.31 M (codebooks are buffers)
    assert params == pytest.approx(79.31e6, rel=0.002)


def test_a_tiny_mimi_trains_a_step(speech_clips):
    """The mimi encoder / decoder and split_rvq train: a padded batch, gradients reach both transformers and
    both quantizer groups, quantizer dropout draws the acoustic depth."""
    common = {"dim": 16, "channels": 4, "ratios": [4, 2], "layers": 1, "heads": 2, "mlp_dim": 32, "context": 4}
    tok = Tokenizer.from_config({
        "modality": "audio", "sample_rate": 24_000, "channels": 1, "encoder": {"name": "mimi", **common},
        "decoder": {"name": "mimi", **common},
        "quantizer": {"name": "split_rvq", "dim": 16, "code_dim": 8, "depth": 3, "codebook_size": 16, "ema": False,
                      "kmeans_init": False, "quantizer_dropout": 1.0}})
    tok.train()
    batch, lengths = padded([speech_clips[0][:, :700], speech_clips[1][:, :333]])
    out = tok(batch, lengths=lengths)
    assert out.x_hat.shape == batch.shape and out.ids.shape[1] == 44
    (out.quantized.loss + (out.x_hat - batch).abs().mean()).backward()
    for part in (tok.encoder.transformer, tok.decoder.transformer, tok.quantizer.semantic, tok.encoder.downsample):
        assert all(p.grad is not None for p in part.parameters()), [n for n, p in part.named_parameters() if p.grad is None]
