"""``discotok convert dac``: a DAC saved by descript-audio-codec 1.0.0 (random weights) gives the reference's ids
and audio, and a bad source gets a clear error."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.conftest import AUDIO_RATE, randomised

dac = pytest.importorskip("dac")

CONFIGS = {
    "even_rates": {"encoder_dim": 8, "encoder_rates": [2, 4, 8], "decoder_dim": 64, "decoder_rates": [8, 4, 2]},
    "rate_5": {"encoder_dim": 8, "encoder_rates": [2, 5, 4], "decoder_dim": 64, "decoder_rates": [4, 5, 2]},
}


def reference(kind: str, seed: int = 0) -> torch.nn.Module:
    """A small DAC with random weights, Snake slopes and biases (DAC's init leaves them at 1 and 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dac.DAC(**CONFIGS[kind], n_codebooks=4, codebook_size=32, codebook_dim=4, sample_rate=AUDIO_RATE)
    return randomised(model, seed)


def saved(model: torch.nn.Module, path: Path) -> Path:
    """The model as the publisher ships it: ``DAC.save`` without torch.package (state_dict + metadata)."""
    model.save(str(path), package=False)
    return path


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_converted_dac_gives_the_reference_ids_and_audio(kind, tmp_path, speech_clips, capsys):
    ref = reference(kind)
    rc = main(["convert", "dac", str(saved(ref, tmp_path / "weights.pth")), "-o", str(tmp_path / "tok")])
    assert rc == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    lengths = torch.tensor([1800, 1111, 640, 97])
    clips = [c[:, :n] for c, n in zip(speech_clips, lengths.tolist())]
    batch = torch.zeros(len(clips), 1, int(lengths.max()))
    for b, clip in enumerate(clips):
        batch[b, :, : clip.shape[-1]] = clip
    ids = tok.encode(batch, lengths)
    hop = tok.modality.hop_length
    assert hop == math.prod(CONFIGS[kind]["encoder_rates"])
    with torch.no_grad():
        for b, clip in enumerate(clips):
            frames = tok.modality.num_frames(clip.shape[-1])
            _, codes, *_ = ref.encode(ref.preprocess(clip[None], AUDIO_RATE))
            assert torch.equal(ids[b, :frames], codes[0].T), f"item {b}"
            expected = ref.decode(ref.quantizer.from_codes(codes)[0])[0]
            ours = tok.decode(ids[b : b + 1, :frames])[0]
            n = expected.shape[-1]  # DAC's rate-5 models give a few samples fewer than frames x hop
            assert n >= frames * hop - 8 and (ours[..., :n] - expected).abs().max() < 1e-4, f"item {b}"
    for depth in (1, 2):
        _, codes, *_ = ref.encode(ref.preprocess(clips[0][None], AUDIO_RATE), n_quantizers=depth)
        assert torch.equal(tok.encode(clips[0][None], depth=depth)[0], codes[0, :depth].T)


def test_bad_sources_get_clear_errors(tmp_path, capsys):
    ref = reference("even_rates")
    good = saved(ref, tmp_path / "weights.pth")
    with pytest.raises(ConvertError, match="no such file"):
        convert("dac", tmp_path / "absent.pth")
    with pytest.raises(ConvertError, match="unknown format 'dac2'; formats: .*dac, encodec"):
        convert("dac2", good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ConvertError, match="truncated.pth: not a readable a DAC .pth file"):
        convert("dac", truncated)
    packaged = tmp_path / "packaged.pth"
    ref.save(str(packaged))  # torch.package: it would run code when loaded, so it is refused unread
    with pytest.raises(ConvertError, match="not a readable"):
        convert("dac", packaged)
    other = tmp_path / "other.pth"
    torch.save({"model": ref.state_dict()}, other)
    with pytest.raises(ConvertError, match=r"not a DAC checkpoint: expected keys 'state_dict' and 'metadata'.*found \['model'\]"):
        convert("dac", other)
    obj = torch.load(good, weights_only=True)
    obj["metadata"]["kwargs"]["n_codebooks"] = 5
    del obj["state_dict"]["decoder.model.0.bias"]
    obj["state_dict"]["encoder.block.0.bias"] = torch.zeros(3)
    torch.save(obj, tmp_path / "mismatched.pth")
    with pytest.raises(ConvertError) as err:
        convert("dac", tmp_path / "mismatched.pth")
    message = str(err.value)
    assert "missing: decoder.stem.conv.bias, quantizer.levels.4." in message
    assert "mis-shaped: encoder.stem.conv.bias (the source's encoder.block.0.bias) (3,) (expected (8,))" in message
    rc = main(["convert", "dac", str(tmp_path / "mismatched.pth"), "-o", str(tmp_path / "out")])
    err_text = capsys.readouterr().err
    assert rc == 1 and err_text.startswith("discotok convert: error:") and err_text.count("\n") == 1
    assert not (tmp_path / "out").exists()
