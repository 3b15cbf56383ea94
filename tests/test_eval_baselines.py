"""Classical baselines of `discotok eval`: thumbnail, JPEG, WebP, Opus, mu-law, the report's section and sentences."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from discotok import Tokenizer
from discotok.cli import main
from discotok.eval import evaluate
from discotok.eval.baselines.contract import Comparison, Point, losses
from discotok.eval.baselines.jpeg import jpeg, jpeg_header_bytes
from discotok.eval.baselines.mulaw import MuLaw
from discotok.eval.baselines.opus import Opus, ogg_payload_bytes
from discotok.eval.baselines.thumbnail import Thumbnail
from discotok.eval.baselines.webp import VP8_FRAME_HEADER, webp, webp_header_bytes
from discotok.metrics import mel_distance, psnr
from tests.conftest import AUDIO_RATE, tiny_audio_config, tiny_tokenizer_config


def photo(name: str, size: int = 64) -> np.ndarray:
    """A scikit-image photo, resized to size x size RGB uint8."""
    return np.asarray(Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((size, size), Image.BICUBIC))


def as_tensor(item: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(item).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def test_thumbnail_points_bits_and_quality_grow_with_the_budget() -> None:
    codec, item = Thumbnail((64, 64)), photo("chelsea")
    # 640 bits: 5x5 (600 bits) is nearest; 4x4 and 6x6 are its neighbours.
    assert [p.label for p in codec.points([640])] == ["thumbnail 4x4", "thumbnail 5x5", "thumbnail 6x6"]
    scores = []
    for h in (4, 8, 16):
        point = next(p for p in codec.points([24 * h * h]) if p.settings["size"] == (h, h))
        coded = codec.code(item, point)
        assert coded.bits == 24 * h * h and coded.header_bits == 0 and coded.item.shape == item.shape
        scores.append(psnr(as_tensor(coded.item), as_tensor(item)).item())
    assert np.isfinite(scores).all() and scores[0] < scores[1] < scores[2], scores
    # A non-square image keeps its aspect ratio.
    assert Thumbnail((32, 64)).points([24 * 8])[1].settings["size"] == (2, 4)


@pytest.mark.parametrize("make", [jpeg, webp], ids=["jpeg", "webp"])
def test_quality_search_lands_within_one_step_of_the_target(make) -> None:
    codec, item = make(), photo("astronaut")
    low, high = codec.qualities
    payload = {q: 8 * (len(d) - codec.header_bytes(d)) for q in range(low, high + 1) for d in [codec.encode(item, q)]}
    sizes = sorted(payload.values())
    for target in np.quantile(sizes, [0.1, 0.35, 0.6, 0.9]):
        coded = codec.code(item, Point("t", float(target)))
        q = int(coded.setting)
        assert coded.bits == payload[q]
        neighbours = [payload[s] for s in (q - 1, q, q + 1) if low <= s <= high]
        step = max(abs(b - coded.bits) for b in neighbours)
        assert min(neighbours) <= target <= max(neighbours), (target, q, neighbours)
        assert abs(coded.bits - target) <= step and abs(coded.bits - target) <= abs(neighbours[0] - target)
    # Below the codec's reach: its lowest quality, and `lowest` says so.
    floor = codec.lowest(item)
    assert floor.setting == low and floor.bits == payload[low]
    assert codec.code(item, Point("t", floor.bits / 4)).bits == floor.bits


def test_headers_are_parsed_from_the_markers() -> None:
    files = {}
    for name in ("astronaut", "coffee"):
        buffer = io.BytesIO()
        Image.fromarray(photo(name)).save(buffer, format="JPEG", quality=50)  # standard tables: one header size
        files[name] = buffer.getvalue()
    headers = {name: jpeg_header_bytes(data) for name, data in files.items()}
    assert headers["astronaut"] == headers["coffee"] and len(files["astronaut"]) != len(files["coffee"])
    data = files["astronaut"]
    sos = data.rindex(b"\xff\xda", 0, headers["astronaut"])
    assert headers["astronaut"] == sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big") + 2
    encoded = webp().encode(photo("coffee"), 50)
    assert webp_header_bytes(encoded) == 12 + 8 + VP8_FRAME_HEADER + (len(encoded) % 2)
    with pytest.raises(ValueError, match="SOI"):
        jpeg_header_bytes(encoded)


def test_opus_at_the_asked_rate_and_mu_law(speech_clips: list[torch.Tensor]) -> None:
    codec = Opus(AUDIO_RATE)
    clips = [c.numpy() for c in speech_clips[:3]]
    seconds = sum(c.shape[-1] for c in clips) / AUDIO_RATE
    mels = {}
    for asked in (6000, 24000):
        coded = [codec.code(c, Point("o", asked)) for c in clips]
        rate = sum(c.bits for c in coded) / seconds
        assert abs(rate - asked) <= 0.2 * asked, (asked, rate)
        assert all(c.item.shape == x.shape for c, x in zip(coded, clips))
        mels[asked] = np.mean([mel_distance(torch.from_numpy(c.item)[None], torch.from_numpy(x)[None], AUDIO_RATE).item()
                               for c, x in zip(coded, clips)])
    assert mels[24000] < mels[6000], mels
    data = codec.encode(clips[0], 12000)
    assert 0 < ogg_payload_bytes(data) < len(data) and data[:4] == b"OggS"
    mu = MuLaw(AUDIO_RATE).code(clips[0], Point("m"))
    assert mu.bits == 8 * clips[0].size and np.abs(mu.item - clips[0]).max() < 0.05


def test_opus_resamples_rates_it_does_not_run_at() -> None:
    t = np.arange(11025) / 22050
    clip = (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    coded = Opus(22050).code(clip, Point("o", 32000))
    assert coded.item.shape == clip.shape
    assert mel_distance(torch.from_numpy(coded.item)[None], torch.from_numpy(clip)[None], 22050).item() < 0.5


def test_losses_name_the_cheapest_codec_that_beats_a_point() -> None:
    comparison = Comparison("bits_per_second", "bits/s", "mel_distance", "mel distance", "{:.3f}", higher_is_better=False)
    tokens = [{"tokenizer": "t", "label": "depth=1", "bits_per_second": 6000, "mel_distance": 1.0},
              {"tokenizer": "t", "label": "depth=4", "bits_per_second": 24000, "mel_distance": 0.2},
              {"tokenizer": "t", "label": "depth=8", "bits_per_second": 48000, "mel_distance": 0.01}]

    def codec(label: str, bits: float, with_header: float, mel: float) -> dict:
        return {"label": label, "bits_per_second": bits, "bits_per_second_with_header": with_header, "mel_distance": mel}

    # A spends the fewest payload bits but the most with its header; B and C win where they spend no more.
    codecs = [codec("A", 3000, 30000, 0.15), codec("B", 23000, 23500, 0.18), codec("C", 5900, 7000, 0.9),
              codec("D", 24100, 24100, 0.1)]
    assert losses(tokens, codecs, comparison) == [
        "At 6,000 bits/s the tokenizer t (depth=1; mel distance 1.000) loses to C (5,900 bits/s, 7,000 with its "
        "header; mel distance 0.900).",
        "At 24,000 bits/s the tokenizer t (depth=4; mel distance 0.200) loses to B (23,000 bits/s, 23,500 with its "
        "header; mel distance 0.180)."]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos and a flat image (which a 1x1 thumbnail reproduces exactly)."""
    root = tmp_path_factory.mktemp("baseline_photos")
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(photo(name, 32)).save(root / f"{name}.png")
    Image.new("RGB", (32, 32), (90, 140, 200)).save(root / "flat.png")
    return root


def test_untrained_tokenizer_loses_to_a_thumbnail_in_the_report(photo_folder: Path, tmp_path: Path, capsys) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path / "untrained")
    out = tmp_path / "report"
    rc = main(["eval", str(tok), str(photo_folder), "-o", str(out), "--no-fid", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    section, result = report["baselines"], report["results"][0]
    bits = result["bits_per_image"]  # 16 tokens of log2(125) bits
    rows = {r["label"]: r for r in section["results"]}
    assert set(rows) == {"thumbnail 1x1", "thumbnail 2x2", "thumbnail 3x3",
                         *(f"{codec} near {f * bits:,.0f} bits" for codec in ("JPEG", "WebP") for f in (0.5, 1, 2))}
    for row in rows.values():
        assert np.isfinite(row["psnr"]) and np.isfinite(row["ssim"])
        assert row["bits_per_image_with_header"] >= row["bits_per_image"]
    assert rows["thumbnail 2x2"]["bits_per_image"] == 96 and rows["thumbnail 1x1"]["psnr_at_ceiling"] == 1
    assert rows[f"JPEG near {bits:,.0f} bits"]["bits_per_image_with_header"] > 8 * 150  # tables and frame header
    winners = [r for r in rows.values() if r["psnr"] > result["psnr"] and r["bits_per_image"] <= bits]
    cheapest = min(winners, key=lambda r: r["bits_per_image_with_header"])
    sentence = (f"At {bits:,.0f} bits/image the tokenizer untrained (full; PSNR {result['psnr']:.2f} dB) loses to "
                f"{cheapest['label']} ({cheapest['bits_per_image']:,.0f} bits/image; PSNR {cheapest['psnr']:.2f} dB).")
    assert cheapest["label"].startswith("thumbnail") and section["loses_to"] == [sentence]
    assert sentence in (out / "report.md").read_text() and sentence in captured.out
    assert {r["codec"] for r in section["lowest"]} == {"thumbnail", "JPEG", "WebP"}
    assert any(n.startswith("WebP cannot go as low as") for n in section["notes"])
    assert "thumbnail 1x1: 1 image reproduced to within 8-bit rounding" in " ".join(section["notes"])
    assert report["options"]["baselines"] is True
    again = evaluate([tok], photo_folder, tmp_path / "none", fid=False, baselines=False, progress=False)
    assert "baselines" not in again and again["results"][0]["psnr"] == pytest.approx(result["psnr"])


def test_audio_report_has_opus_and_mu_law(speech_folder: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_config(tiny_audio_config("rvq")).eval()
    report = evaluate([tok], speech_folder, tmp_path / "audio", depths=[1], batch_size=3, progress=False)
    assert [p.label for p in Opus(AUDIO_RATE, 2).points([1250, 3750, 12000, 24000])] == [
        "Opus at its floor (asked 1,250, 3,750 bits/s)", "Opus near 12,000 bits/s", "Opus near 24,000 bits/s"]
    section = report["baselines"]
    rows = {r["label"]: r for r in section["results"]}
    rates = [r["bits_per_second"] for r in report["results"]]
    assert set(rows) == {f"Opus at its floor (asked {rates[0]:,.0f} bits/s)", "8-bit mu-law"}
    assert rows["8-bit mu-law"]["bits_per_second"] == pytest.approx(8 * AUDIO_RATE)
    assert rows["8-bit mu-law"]["si_snr"] > max(r["si_snr"] for r in section["results"] if r["codec"] == "Opus")
    # The tiny tokenizer's rates are below Opus's 6 kbps floor: the report says so.
    assert any(n.startswith(f"Opus cannot go as low as {rates[0]:,.0f} bits/s") for n in section["notes"])
    assert "Opus" in (tmp_path / "audio" / "report.md").read_text()
