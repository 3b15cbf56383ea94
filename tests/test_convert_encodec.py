"""``discotok convert encodec``: EnCodec 24 kHz state dicts (the encodec package 0.1.1, random weights) give the
reference's ids and audio, item by item, inside padded batches of any lengths; bandwidths are depths (the 48 kHz
family: ``tests/test_convert_encodec48.py``)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.conftest import randomised

encodec = pytest.importorskip("encodec")


def small_reference() -> torch.nn.Module:
    """The 24 kHz family at a tenth of the width: 2 stages (hop 8), 16-d latents, 4 codebooks of 32."""
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    parts = {"channels": 1, "dimension": 16, "n_filters": 4, "ratios": [4, 2], "causal": True, "norm": "weight_norm"}
    quantizer = ResidualVectorQuantizer(dimension=16, n_q=4, bins=32)
    return encodec.EncodecModel(SEANetEncoder(**parts), SEANetDecoder(**parts), quantizer, [1.5, 3.0], 24_000, 1)


def reference(kind: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = small_reference() if kind == "small" else encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    return randomised(model)


@pytest.mark.parametrize("kind", ["small", "24khz"])
def test_converted_encodec_gives_the_reference_ids_and_audio(kind, tmp_path, speech_clips, capsys):
    ref = reference(kind)
    torch.save(ref.state_dict(), tmp_path / "encodec.th")
    rc = main(["convert", "encodec", str(tmp_path / "encodec.th"), "-o", str(tmp_path / "tok")])
    assert rc == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    hop = tok.modality.hop_length
    assert (hop, tok.modality.sample_rate) == (math.prod(ref.encoder.ratios), 24_000)
    assert tok.modality.segmenting is None and "segments" not in tok.config  # whole clips
    lengths = torch.tensor([4000, 2777, 963, 5])  # none a multiple of the hop; the last shorter than a hop
    clips = [c[:, :n] for c, n in zip(speech_clips, lengths.tolist())]
    batch = torch.zeros(len(clips), 1, int(lengths.max()))
    for b, clip in enumerate(clips):
        batch[b, :, : clip.shape[-1]] = clip
    ids = tok.encode(batch, lengths)
    decoded = tok.decode(ids, lengths=lengths)
    with torch.no_grad():
        for b, clip in enumerate(clips):
            frames = tok.modality.num_frames(clip.shape[-1])
            encoded = ref.encode(clip[None])
            assert torch.equal(ids[b, :frames], encoded[0][0][0].T), f"item {b}"
            expected = ref(clip[None])[0]  # decode, cut to the clip
            n = clip.shape[-1]
            assert (decoded[b, :, :n] - expected).abs().max() < 1e-4, f"item {b}"
            alone = tok.decode(ids[b : b + 1, :frames])[0, :, :n]
            assert (alone - expected).abs().max() < 1e-4, f"item {b}"
    for bandwidth in ref.target_bandwidths[:2]:
        ref.set_target_bandwidth(bandwidth)
        codes = ref.encode(clips[0][None])[0][0][0]
        assert torch.equal(tok.encode(clips[0][None], depth=codes.shape[0])[0], codes.T)


def test_other_sources_are_refused_with_the_reason(tmp_path):
    torch.save({"state_dict": {}, "metadata": {"kwargs": {}}}, tmp_path / "dac.pth")
    with pytest.raises(ConvertError, match="not an EnCodec state dict"):
        convert("encodec", tmp_path / "dac.pth")
    state = small_reference().state_dict()
    del state["encoder.model.0.conv.conv.bias"]
    state["quantizer.vq.layers.9._codebook.embed"] = torch.zeros(32, 16)
    torch.save(state, tmp_path / "edited.th")
    with pytest.raises(ConvertError, match=r"missing: encoder.stem.conv.bias, quantizer.levels.4.*1 unexpected: "
                                           r"quantizer.levels.9.codebook \(the source's quantizer.vq.layers.9._codebook.embed\)"):
        convert("encodec", tmp_path / "edited.th")


def test_bandwidths_are_depths(tmp_path, speech_clips, capsys):
    torch.save(reference("small").state_dict(), tmp_path / "encodec.th")
    tok = convert("encodec", tmp_path / "encodec.th", tmp_path / "tok")
    rates = tok.modality.bit_rates
    assert tok.modality.depth_for_bandwidth(rates[2] / 1e3) == 2
    with pytest.raises(ValueError, match="bandwidth 7 kbps is not one of this codec's"):
        tok.modality.depth_for_bandwidth(7)
    import soundfile as sf

    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", speech_clips[0][0, :2400].numpy(), 24_000)
    rc = main(["encode", str(tmp_path / "tok"), str(tmp_path / "in"), "-o", str(tmp_path / "ids"),
               "--bandwidth", f"{rates[2] / 1e3:g}", "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "ids" / "manifest.json").read_text())
    assert manifest["encode_options"]["depth"] == 2 and manifest["ids_shape"][-1] == 2
