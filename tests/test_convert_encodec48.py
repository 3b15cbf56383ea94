"""``discotok convert encodec`` on the 48 kHz stereo family (the encodec package 0.1.1, random weights, time group
norm, not causal): the converted tokenizer gives the reference's ids and audio with ``segment=None`` and
``normalize=False`` (one segment, no loudness scale), item by item inside padded batches of stereo clips of any
lengths; 3 / 6 / 12 / 24 kbps are depths 2 / 4 / 8 / 16. ``discotok.convert.encodec_segments`` gives the reference's
default coding (1-s segments, loudness scales, overlap-add): the same ids per segment, scales and audio."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from einops import rearrange

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.conftest import randomised
from tests.hf_reference import fill_codebooks, flushed_one_thread

encodec = pytest.importorskip("encodec")

LENGTHS = [9601, 4000, 963, 5]  # none a multiple of the hop (8 small, 320 full); the last shorter than a hop


pytestmark = pytest.mark.usefixtures("flush_denormals")  # tests/conftest.py: one thread, denormals flushed


def stereo(speech_clips: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Stereo clips (2, n) of ``LENGTHS`` made from speech (the right channel a delayed, quieter copy), and them as
    one zero-padded batch with its lengths."""
    clips = [torch.cat([c[:, :n], 0.6 * c[:, 40 : n + 40]]) for c, n in zip(speech_clips, LENGTHS)]
    lengths = torch.tensor([c.shape[-1] for c in clips])
    batch = torch.zeros(len(clips), 2, int(lengths.max()))
    for b, clip in enumerate(clips):
        batch[b, :, : clip.shape[-1]] = clip
    return clips, batch, lengths


def small_reference(ratios: tuple[int, ...] = (4, 2)) -> torch.nn.Module:
    """The 48 kHz family at an eighth of the width: 2 stages (hop 8) unless ``ratios`` says, 16-d latents, 4
    codebooks of 32."""
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    parts = {"channels": 2, "dimension": 16, "n_filters": 4, "ratios": list(ratios), "causal": False,
             "norm": "time_group_norm"}
    quantizer = ResidualVectorQuantizer(dimension=16, n_q=4, bins=32)
    return encodec.EncodecModel(SEANetEncoder(**parts), SEANetDecoder(**parts), quantizer, [3.0, 6.0], 48_000, 2)


@torch.no_grad()
def reference(kind: str, clips: list[torch.Tensor], ratios: tuple[int, ...] = (4, 2)) -> torch.nn.Module:
    """A random reference made meaningful: biases spread (``randomised``), every codebook (zero when built) filled
    level by level with random codes at the scale of the residuals of ``clips``' latents, the output norm scaled
    so the audio stays inside [-1, 1] (our decode clamps); one segment, no loudness normalisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = kind != "small"
        model = encodec.EncodecModel.encodec_model_48khz(pretrained=False) if full else small_reference(ratios)
    model.segment, model.normalize = None, False
    model = randomised(model)
    residual = torch.cat([rearrange(model.encoder(c[None]), "1 d n -> n d") for c in clips])
    fill_codebooks([layer._codebook for layer in model.quantizer.vq.layers], residual)
    last = model.decoder.model[-1].conv.norm
    last.weight.fill_(0.1)
    last.bias.mul_(0.1)
    return model


@pytest.mark.parametrize("kind", ["small", "48khz"])
def test_converted_encodec48_gives_the_reference_ids_and_audio(kind, tmp_path, speech_clips, capsys):
    clips, batch, lengths = stereo(speech_clips)
    ref = reference(kind, clips)
    assert any(".norm." in k for k in ref.state_dict())
    torch.save(ref.state_dict(), tmp_path / "encodec_48khz.th")
    rc = main(["convert", "encodec", str(tmp_path / "encodec_48khz.th"), "-o", str(tmp_path / "tok")])
    assert rc == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    hop = tok.modality.hop_length
    assert (hop, tok.modality.sample_rate, tok.modality.channels) == (math.prod(ref.encoder.ratios), 48_000, 2)
    assert not tok.encoder.causal and "segment=None, normalize=False" in tok.config["metadata"]["segments"]
    assert tok.config["segments"] == {"seconds": 1.0, "overlap": 0.01, "normalize": True}  # discotok encode's coding
    ids = tok.encode(batch, lengths)
    decoded = tok.decode(ids, lengths=lengths)
    distinct, total = set(), 0
    with torch.no_grad():
        for b, clip in enumerate(clips):
            frames = tok.modality.num_frames(clip.shape[-1])
            codes = ref.encode(clip[None])[0][0][0]
            assert torch.equal(ids[b, :frames], codes.T), f"item {b}"
            distinct, total = distinct | set(codes.flatten().tolist()), total + codes.numel()
            expected = ref(clip[None])[0]  # decode, cut to the clip
            assert expected.abs().max() < 1
            n = clip.shape[-1]
            assert (decoded[b, :, :n] - expected).abs().max() < 1e-4, f"item {b}"
            alone = tok.decode(ids[b : b + 1, :frames])[0]
            whole = ref.decode(ref.encode(clip[None]))[0]  # frames x hop samples, not cut to the clip
            assert alone.shape == whole.shape and (alone - whole).abs().max() < 1e-4, f"item {b}"
    assert len(distinct) > min(tok.quantizer.codebook_size, total) // 2, f"only {len(distinct)} distinct of {total} ids"
    for bandwidth in ref.target_bandwidths:
        ref.set_target_bandwidth(bandwidth)
        with torch.no_grad():
            codes = ref.encode(clips[0][None])[0][0][0]
        depth = codes.shape[0]  # the small model's frame rate makes its bandwidths depth 1
        if kind == "48khz":
            assert tok.modality.depth_for_bandwidth(bandwidth) == depth == 2 * bandwidth / 3
        assert torch.equal(tok.encode(clips[0][None], depth=depth)[0], codes.T)


def test_encodec48_bandwidths_and_bad_input(tmp_path, speech_clips):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    torch.save(full.state_dict(), tmp_path / "encodec_48khz.th")
    tok = convert("encodec", tmp_path / "encodec_48khz.th")
    assert tok.modality.frames_per_second == 150 and tok.quantizer.depth == 16
    assert [tok.modality.depth_for_bandwidth(kbps) for kbps in full.target_bandwidths] == [2, 4, 8, 16]
    with pytest.raises(ValueError, match="bandwidth 7 kbps is not one of this codec's: 1.5, 3, 4.5"):
        tok.modality.depth_for_bandwidth(7)
    with pytest.raises(ValueError, match=r"expected waveforms of shape \(B, 2, T\)"):
        tok.encode(speech_clips[0][None, :, :4000])  # mono into a stereo tokenizer
    state = small_reference().state_dict()
    del state["encoder.model.0.conv.norm.weight"]
    state["decoder.model.3.convtr.norm.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "edited.th")
    with pytest.raises(ConvertError, match=r"missing: encoder.stem.norm.weight; .*mis-shaped: "
                                           r"decoder.stages.0.up.norm.bias \(the source's "
                                           r"decoder.model.3.convtr.norm.bias\) \(5,\) \(expected \(8,\)\)"):
        convert("encodec", tmp_path / "edited.th")
    mixed = small_reference().state_dict()
    mixed["encoder.model.0.conv.conv.weight_v"] = mixed.pop("encoder.model.0.conv.conv.weight")
    torch.save(mixed, tmp_path / "mixed.th")
    with pytest.raises(ConvertError, match="group norms .* beside weight-norm tensors"):
        convert("encodec", tmp_path / "mixed.th")
    with pytest.raises(ValueError, match="time group norm .* cannot be causal"):
        Tokenizer.from_config({**tok.config, "encoder": {**tok.config["encoder"], "causal": True}})


def test_segments_give_the_reference_default_encode_and_decode(tmp_path, speech_clips):
    """``encode_segments`` / ``decode_segments``: the publisher's default coding (1-s segments at a stride of
    0.99 s, loudness scales, overlap-add): the same ids per segment, the same scales, the same audio."""
    from discotok.convert.encodec_segments import decode_segments, encode_segments

    speech = torch.cat(speech_clips, dim=-1)[0]
    assert speech.shape[-1] > 2 * 100_001 + 40
    pair = torch.stack([torch.stack([speech[:100_001], 0.6 * speech[40:100_041]]),
                        0.05 * torch.stack([speech[-100_001:], speech[-100_001:].flip(-1)])])
    short = pair[:1, :, 3_000:50_700]  # 47700 samples: a segment, then a 180-sample one
    ref = reference("small", [pair[0], pair[1] / 0.05], ratios=(8, 5, 4))  # hop 160: 300 LSTM steps a segment
    ref.segment, ref.normalize = 1.0, True
    torch.save(ref.state_dict(), tmp_path / "encodec_48khz.th")
    tok = convert("encodec", tmp_path / "encodec_48khz.th")
    distinct, scales = set(), []
    for x, count in ((pair, 3), (short, 2)):
        with torch.no_grad():
            frames = ref.encode(x)
            expected = ref.decode(frames)
        segments = encode_segments(tok, x)
        assert len(segments.ids) == len(frames) == count
        for ours, (codes, scale) in zip(segments.ids, frames):
            assert torch.equal(ours, rearrange(codes, "b k n -> b n k"))
            distinct |= set(codes.flatten().tolist())
        assert torch.equal(segments.scales, torch.cat([scale for _, scale in frames], dim=1))
        scales.append(segments.scales)
        decoded = decode_segments(tok, segments)
        assert decoded.shape == expected.shape and decoded.shape[-1] >= x.shape[-1]
        assert (decoded - expected).abs().max() < 1e-4
    assert len(distinct) > 16
    assert scales[0].shape == (2, 3) and scales[1].shape == (1, 2)
    loud = encode_segments(tok, pair[1:] / 0.05).scales[0]  # the quiet item's content at full level, alone
    assert torch.allclose(scales[0][1], 0.05 * loud, rtol=1e-3)  # the quiet item's own scales, not the batch's
    with torch.no_grad():
        ref.set_target_bandwidth(3.0)
        codes = ref.encode(short)[1][0]
    assert codes.shape[1] == 2  # 3 kbps at 300 frames/s of 32 codes
    assert torch.equal(encode_segments(tok, short, depth=2).ids[1], rearrange(codes, "b k n -> b n k"))


def test_full_size_segments_give_the_reference_default_coding(tmp_path, speech_clips):
    """The full-size 48 kHz model coded the publisher's way: 72001 samples, two segments (150 and 77 frames)."""
    from discotok.convert.encodec_segments import decode_segments, encode_segments

    speech = torch.cat(speech_clips, dim=-1)[0]
    x = torch.stack([speech[:72_001], 0.3 * speech[500:72_501]])[None]
    ref = reference("48khz", [x[0]])
    ref.segment, ref.normalize = 1.0, True
    torch.save(ref.state_dict(), tmp_path / "encodec_48khz.th")
    tok = convert("encodec", tmp_path / "encodec_48khz.th")
    with torch.no_grad():
        frames = ref.encode(x)
        expected = ref.decode(frames)
    segments = encode_segments(tok, x)
    assert [ids.shape[1] for ids in segments.ids] == [codes.shape[-1] for codes, _ in frames] == [150, 77]
    for ours, (codes, _) in zip(segments.ids, frames):
        assert torch.equal(ours, rearrange(codes, "b k n -> b n k"))
    assert torch.equal(segments.scales, torch.cat([scale for _, scale in frames], dim=1))
    assert torch.cat([ids.flatten() for ids in segments.ids]).unique().numel() > 300
    decoded = decode_segments(tok, segments)
    assert decoded.shape == expected.shape == (1, 2, 72_160)
    assert (decoded - expected).abs().max() < 1e-4


@pytest.fixture(scope="module")
def segmenting_tok(tmp_path_factory, speech_clips):
    """A converted small 48 kHz EnCodec (hop 160, segments of the publisher's coding) saved, and stereo wavs at 48
    kHz (float, so the files hold the tensors exactly): 100001 samples (3 segments), a quiet 48100 (2), 47700 (a
    segment whose first part decodes longer than the clip) and 9601 (1), and a mono file of 20000."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("encodec48_cli")
    speech = torch.cat(speech_clips, dim=-1)[0]
    clips = {"a_long.wav": torch.stack([speech[:100_001], 0.6 * speech[40:100_041]]),
             "b_quiet.wav": 0.05 * torch.stack([speech[60_000:108_100], speech[60_000:108_100].flip(-1)]),
             "c_47700.wav": torch.stack([speech[3_000:50_700], speech[3_100:50_800]]),
             "d_short.wav": torch.stack([speech[7_000:16_601], 0.5 * speech[7_020:16_621]]),
             "e_mono.wav": speech[20_000:40_000][None]}
    (folder / "wavs").mkdir()
    for name, clip in clips.items():
        sf.write(folder / "wavs" / name, clip.T.numpy(), 48_000, subtype="FLOAT")
    with flushed_one_thread(), torch.no_grad():
        ref = reference("small", [clips["a_long.wav"], clips["d_short.wav"]], ratios=(8, 5, 4))
        ref.decoder.model[-1].conv.norm.weight.fill_(1.0)  # segments decode at about unit level times their scale
    torch.save(ref.state_dict(), folder / "encodec_48khz.th")
    convert("encodec", folder / "encodec_48khz.th", folder / "tok")
    return folder, clips


def test_cli_round_trip_equals_the_segmented_functions(segmenting_tok, tmp_path, capsys):
    """``discotok encode`` stores each item's segments' ids and loudness scales; ``discotok decode`` uses them: ids
    and scales equal ``encode_segments``'s of each file alone, wavs equal ``decode_segments``'s cut to each file's
    length (as 16-bit wavs; another batch's float rounding may move a few samples by one step). A
    mono file is converted to stereo (duplicated), as the reader does for every audio tokenizer, and counted in the
    manifest; a mono tensor into ``encode_segments`` is refused."""
    import soundfile as sf

    from discotok.data.audio import load_audio
    from discotok.io import load_ids
    from discotok.modalities.audio_segments import decode_segments, encode_segments

    folder, clips = segmenting_tok
    tok = Tokenizer.from_pretrained(folder / "tok")
    args = ["--no-progress", "--device", "cpu"]
    for fmt in ("npy", "wds"):
        out = tmp_path / fmt
        assert main(["encode", str(folder / "tok"), str(folder / "wavs"), "-o", str(out / "ids"), "--format", fmt,
                     "--batch-size", "5", *args]) == 0, capsys.readouterr().err
        assert main(["decode", str(folder / "tok"), str(out / "ids"), "-o", str(out / "wavs"), "--no-progress"]) == 0
        loaded = load_ids(out / "ids")
        manifest = loaded.manifest
        assert manifest["channels_converted_items"] == 1
        for row, item in enumerate(manifest["items"]):
            x = load_audio(folder / "wavs" / item["source"], 48_000, 2)[0][None]
            segments = encode_segments(tok, x)
            ids = torch.cat(segments.ids, dim=1)[0]
            assert item["frames"] == ids.shape[0] and item["samples"] == x.shape[-1]
            assert torch.equal(torch.from_numpy(loaded.ids[row, : ids.shape[0]]), ids), item["source"]
            assert (loaded.ids[row, ids.shape[0] :] == -1).all()
            assert item["scales"] == segments.scales[0].tolist(), item["source"]  # float32, exact through JSON
            expected = decode_segments(tok, segments)[0, :, : x.shape[-1]].clamp(-1, 1)
            written = tmp_path / f"expected_{row}.wav"
            tok.modality.writer().write(written, expected)
            ours = sf.read(out / "wavs" / f"{row:04d}_{Path(item['source']).stem}.wav", dtype="int16")[0]
            theirs = sf.read(written, dtype="int16")[0]
            assert ours.shape == theirs.shape == (x.shape[-1], 2)
            assert abs(ours.astype(int) - theirs).max() <= 1 and (ours != theirs).mean() < 0.01, item["source"]
            assert abs(theirs).max() > 300, item["source"]  # loud enough to compare
    scales = {i["source"]: i["scales"] for i in manifest["items"]}
    assert [len(scales[n]) for n in sorted(scales)] == [3, 2, 2, 1, 1]
    assert max(scales["b_quiet.wav"]) < 0.2 * min(scales["a_long.wav"])  # 0.05 times as loud
    with pytest.raises(ValueError, match=r"expected waveforms of shape \(B, 2, T\), got \(1, 1, 20000\)"):
        encode_segments(tok, clips["e_mono.wav"][None])  # Python: a mono tensor is refused


def test_decode_refuses_ids_without_their_scales(segmenting_tok, tmp_path, capsys):
    folder, _ = segmenting_tok
    out = tmp_path / "ids"
    (tmp_path / "list.txt").write_text(str(folder / "wavs" / "d_short.wav") + "\n")
    assert main(["encode", str(folder / "tok"), str(tmp_path / "list.txt"), "-o", str(out), "--no-progress",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    rc = main(["decode", str(folder / "tok"), str(out / "ids-00000.npy"), "-o", str(tmp_path / "shard")])
    assert rc == 0, capsys.readouterr().err  # one shard file decodes with the scales of the manifest beside it
    for change, problem in ((lambda i: i.pop("scales"), "the manifest holds no 'scales'"),
                            (lambda i: i.update(scales=[1.0, 2.0]), r"needs 1 positive loudness scales"),
                            (lambda i: i.update(scales=[-1.0]), r"needs 1 positive loudness scales")):
        edited = json.loads(json.dumps(manifest))
        change(edited["items"][0])
        (out / "manifest.json").write_text(json.dumps(edited))
        assert main(["decode", str(folder / "tok"), str(out), "-o", str(tmp_path / "w")]) == 1
        assert re.search(problem, capsys.readouterr().err)
    (out / "manifest.json").unlink()
    assert main(["decode", str(folder / "tok"), str(out / "ids-00000.npy"), "-o", str(tmp_path / "w")]) == 1
    assert "these ids come without their manifest" in capsys.readouterr().err


def test_a_tokenizer_without_segments_codes_whole_clips(segmenting_tok, tmp_path, capsys):
    """The same weights with ``segments`` taken out of the config: ``discotok encode`` stores ``Tokenizer.encode``'s
    ids of each whole clip, no scales, and ``decode`` gives ``Tokenizer.decode``'s audio, as for every tokenizer."""
    import soundfile as sf

    from discotok.data.audio import load_audio
    from discotok.io import load_ids

    folder, _ = segmenting_tok
    tok = Tokenizer.from_pretrained(folder / "tok")
    whole = Tokenizer.from_config({k: v for k, v in tok.config.items() if k != "segments"})
    whole.load_state_dict(tok.state_dict())
    whole.save_pretrained(tmp_path / "whole")
    assert whole.modality.segmenting is None
    inputs = [str(folder / "wavs" / n) for n in ("a_long.wav", "d_short.wav")]
    (tmp_path / "list.txt").write_text("\n".join(inputs) + "\n")
    assert main(["encode", str(tmp_path / "whole"), str(tmp_path / "list.txt"), "-o", str(tmp_path / "ids"),
                 "--no-progress", "--device", "cpu"]) == 0, capsys.readouterr().err
    assert main(["decode", str(tmp_path / "whole"), str(tmp_path / "ids"), "-o", str(tmp_path / "wavs"),
                 "--no-progress"]) == 0
    loaded = load_ids(tmp_path / "ids")
    for row, (item, path) in enumerate(zip(loaded.manifest["items"], inputs)):
        assert "scales" not in item
        x = load_audio(path, 48_000, 2)[0][None]
        ids = whole.encode(x)[0]
        assert item["frames"] == ids.shape[0] == whole.modality.num_frames(x.shape[-1])
        assert torch.equal(torch.from_numpy(loaded.ids[row, : ids.shape[0]]), ids)
        expected = whole.decode(ids[None], size=(x.shape[-1],))[0]
        ours = sf.read(tmp_path / "wavs" / f"{row:04d}_{Path(path).stem}.wav")[0]
        assert abs(torch.from_numpy(ours.T).float() - expected).max() < 1e-4
