"""`discotok eval` on audio tokenizers: report, figures against a direct computation, depths, plot, protocol, PESQ/STOI."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from discotok import Tokenizer
from discotok.cli import main
from discotok.data.audio import load_audio, pad_batch
from discotok.eval import evaluate
from discotok.metrics import CodebookUsage, mel_distance, si_snr, stft_distance
from tests.conftest import AUDIO_RATE, BAD_SPEECH_FILES, SPEECH_FILES, tiny_audio_config

HOP = 64
# PESQ and STOI come with the optional extra `audio-metrics` (which `dev` includes, so CI runs them).
HAS_PESQ_STOI = all(importlib.util.find_spec(m) is not None for m in ("pesq", "pystoi"))


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_audio_toks")
    torch.manual_seed(0)
    dirs = {"rvq": Tokenizer.from_config(tiny_audio_config("rvq")).save_pretrained(root / "rvq")}
    dirs["fsq"] = Tokenizer.from_config(tiny_audio_config("fsq", causal=True)).save_pretrained(root / "fsq")
    return dirs


def test_two_tokenizers_at_every_depth_report_plot_examples(
    tok_dirs: dict[str, Path], speech_folder: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report"
    pesq = ["--pesq-stoi"] if HAS_PESQ_STOI else []
    rc = main(["eval", str(tok_dirs["rvq"]), str(tok_dirs["fsq"]), str(speech_folder), "-o", str(out),
               *pesq, "--batch-size", "3", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "skipped b/tiny.wav: too short" in captured.err
    assert ("warning: PESQ could not score every clip" in captured.err) == HAS_PESQ_STOI
    assert "| rvq | depth=1 | 250.00 | 1250 |" in captured.out and "| fsq | full | 250.00 | 1741 |" in captured.out
    report = json.loads((out / "report.json").read_text())
    protocol = report["protocol"]
    assert (protocol["sample_rate"], protocol["channels"], protocol["num_clips"]) == (AUDIO_RATE, 1, len(SPEECH_FILES))
    assert protocol["clips_listed"] == len(SPEECH_FILES) + len(BAD_SPEECH_FILES) and protocol["max_seconds"] is None
    assert protocol["resampled_items"] == 1 and protocol["source_sample_rates"] == {"16000": 4, "22050": 1}
    assert "resample" in protocol["preprocessing"]["resampling"] and ("pesq" in protocol) == HAS_PESQ_STOI
    assert "fid" not in protocol
    assert {s["source"] for s in report["skipped"]} == set(BAD_SPEECH_FILES)
    # RVQ depth 3: the default operating points are 1, 2, 3; one point for FSQ.
    assert [(r["tokenizer"], r["label"]) for r in report["results"]] == [
        ("rvq", "depth=1"), ("rvq", "depth=2"), ("rvq", "depth=3"), ("fsq", "full")]
    seconds = sum(load_audio(speech_folder / name, AUDIO_RATE, 1)[0].shape[-1] for name in SPEECH_FILES) / AUDIO_RATE
    for r in report["results"]:
        for key in ("si_snr", "mel_distance", "stft_distance", *(["pesq"] if HAS_PESQ_STOI else []), "codebook_usage",
                    "perplexity", "encode_rtf", "decode_rtf"):
            assert np.isfinite(r[key]), key
        assert r["seconds"] == pytest.approx(seconds) and r["frames_per_second"] == AUDIO_RATE / HOP
        bits = math.log2(32) * r["depth"] if r["depth"] else math.log2(125)
        assert r["bits_per_second"] == pytest.approx(AUDIO_RATE / HOP * bits)
        if HAS_PESQ_STOI:
            assert r["pesq_unscored"] >= 1  # a/s0.wav: 3001 samples, under PESQ's 0.25 s
            # STOI needs 30 frames of speech (about 0.4 s): these short clips are left out, and counted.
            assert r["stoi_unscored"] == len(SPEECH_FILES) and math.isnan(r["stoi"])
    markdown = (out / "report.md").read_text()
    assert "| tokenizer | point | frames/s | bits/s | SI-SNR dB | mel dist |" in markdown
    assert ("PESQ" in markdown) == HAS_PESQ_STOI
    assert "sample_rate" in markdown and "resampled_items" in markdown
    assert "## Residual levels" in markdown and "| rvq | depth=3 |" in markdown.split("## Residual levels")[1]
    rvq_rows = [r for r in report["results"] if r["tokenizer"] == "rvq"]
    assert [len(r["residual_share"]) for r in rvq_rows] == [1, 2, 3] and "residual_share" not in report["results"][-1]
    assert all(r["residual_share"] == rvq_rows[-1]["residual_share"][: r["depth"]] for r in rvq_rows)
    with Image.open(out / "rate_distortion.png") as img:
        # SI-SNR, mel, STFT (+ PESQ, STOI) side by side
        assert img.width > (1000 if HAS_PESQ_STOI else 600) and img.height > 200
    examples = sorted(p.name for p in (out / "examples_rvq").iterdir())
    assert examples[:4] == ["00_depth1.wav", "00_depth2.wav", "00_depth3.wav", "00_original.wav"]
    assert len(examples) == 4 * len(SPEECH_FILES) and report["files"]["examples_fsq"] == "examples_fsq"
    assert sf.info(str(out / "examples_rvq" / "01_depth2.wav")).frames == 5555


def test_figures_match_a_direct_computation(tok_dirs: dict[str, Path], speech_folder: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_pretrained(tok_dirs["rvq"])
    report = evaluate([tok], speech_folder, tmp_path / "o", depths=[2], max_seconds=0.3, batch_size=2, progress=False)
    (result,) = report["results"]
    assert report["protocol"]["max_seconds"] == 0.3 and report["protocol"]["cropped_items"] > 0
    waves = [load_audio(speech_folder / name, AUDIO_RATE, 1)[0][:, :4800] for name in sorted(SPEECH_FILES)]
    scores = {"si_snr": [], "mel_distance": [], "stft_distance": []}
    usage = CodebookUsage(32)
    for wave in waves:  # each clip alone: the batched evaluation must agree
        ids = tok.encode(wave[None], depth=2)
        x_hat = tok.decode(ids)[..., : wave.shape[-1]]
        usage.update(ids)
        scores["si_snr"].append(si_snr(x_hat, wave[None]))
        scores["mel_distance"].append(mel_distance(x_hat, wave[None], AUDIO_RATE))
        scores["stft_distance"].append(stft_distance(x_hat, wave[None]))
    # A batched decode differs from a lone one by ~1e-7 per sample; the STFT distance's log-magnitude
    # term (clamped at 1e-7) turns that into a few tenths of a percent, the other figures agree closely.
    for key, values in scores.items():
        rel = 2e-2 if key == "stft_distance" else 1e-4
        assert result[key] == pytest.approx(torch.cat(values).mean().item(), rel=rel, abs=1e-5), key
    # Padded frames never enter the histogram: usage and perplexity over the valid frames only.
    assert result["codebook_usage"] == pytest.approx(usage.compute()["usage"])
    assert result["perplexity"] == pytest.approx(usage.compute()["perplexity"], rel=1e-6)
    x, lengths = pad_batch(waves)
    assert result["seconds"] == pytest.approx(lengths.sum().item() / AUDIO_RATE)
    assert result["bits_per_second"] == pytest.approx(tok.modality.bits_per_second(2)) and x.shape[-1] == 4800
    # The residual each level removes, over every valid frame of the set (padding left out).
    energies = sum(tok.quantizer.residual_energies(tok.encode_latents(w[None]), tok.encode(w[None], depth=2))
                   .sum(dim=(0, 1)).double() for w in waves)
    shares = [float(1 - energies[j + 1] / energies[j]) for j in range(2)]
    assert result["residual_share"] == pytest.approx(shares, rel=1e-3)
    assert result["residual_left"] == pytest.approx(float(energies[2] / energies[0]), rel=1e-3)


def test_image_options_and_mixed_tokenizers_are_refused(
    tok_dirs: dict[str, Path], speech_folder: Path, tmp_path: Path, vgg16_random_weights: Path, capsys
) -> None:
    from tests.conftest import tiny_tokenizer_config

    image_dir = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path / "image")
    cases = [
        ([str(tok_dirs["rvq"]), str(image_dir)], [], "must share one modality, got ['audio', 'image']"),
        ([str(tok_dirs["rvq"])], ["--lpips-weights", str(vgg16_random_weights)], "LPIPS and pFID are image metrics"),
        ([str(tok_dirs["rvq"])], ["--image-size", "32"], "applies to image tokenizers"),
        ([str(tok_dirs["rvq"])], ["--depth", "4"], "--depth [4] outside 1..3"),
    ]
    for toks, extra, expected in cases:
        rc = main(["eval", *toks, str(speech_folder), "-o", str(tmp_path / "o"), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert rc == 1 and expected in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "o" / "report.json").exists()


def test_pesq_stoi_without_the_extra_is_a_clear_error(tok_dirs, speech_folder, tmp_path, capsys, monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("pesq", "pystoi") else find_spec(name, *a))
    rc = main(["eval", str(tok_dirs["fsq"]), str(speech_folder), "-o", str(tmp_path / "r"), "--pesq-stoi",
               "--workers", "0", "--no-progress"])
    assert rc == 1 and 'pip install "discotok[audio-metrics]"' in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.json").exists()
