"""`discotok eval`: report, markdown, plots, protocol, cached reference statistics, metric values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from discotok import Tokenizer
from discotok.cli import main
from discotok.data.images import load_image_tensor
from discotok.eval import evaluate
from discotok.io import sha256_file
from discotok.metrics import CodebookUsage, psnr
from tests.conftest import tiny_tokenizer_config

NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_images")
    for name in NAMES:
        Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((48, 40)).save(root / f"{name}.png")
    (root / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_toks")
    torch.manual_seed(0)
    dirs = {"grid": Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(root / "grid_fsq")}
    flexible = tiny_tokenizer_config("fsq", encoder="flexible", causal=True)
    dirs["flexible"] = Tokenizer.from_config(flexible).save_pretrained(root / "flex")
    return dirs


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_eval_two_tokenizers_report_plots_protocol_and_cache(
    tok_dirs: dict[str, Path], images: Path, inception_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report"
    argv = ["eval", str(tok_dirs["grid"]), str(tok_dirs["flexible"]), str(images), "-o", str(out),
            "--fid-weights", str(inception_path), "--cache-dir", str(tmp_path / "cache"), "--num-tokens", "1", "16", "--num-images", "3",
            "--pfid-alpha", "0.5", "--pfid-delta", "2", "--workers", "0", "--no-progress"]
    rc, stdout, err = run_cli(capsys, *argv)
    assert rc == 0, err
    assert "skipped b_broken.png" in err and "warning: rFID over 2 images: fewer than the 2048" in err
    assert "| grid_fsq | full | 16 |" in stdout
    report = json.loads((out / "report.json").read_text())
    protocol = report["protocol"]
    assert protocol["num_images"] == 2 and protocol["images_listed"] == 3 and protocol["image_size"] == [32, 32]
    assert "centre crop" in protocol["preprocessing"]["resize"]
    assert protocol["fid"]["weights_sha256"] == sha256_file(inception_path)
    assert protocol["fid"]["weights_file"] == str(inception_path.resolve())
    assert protocol["fid"]["reference_stats"]["from_cache"] is False
    assert protocol["pfid"]["alpha"] == 0.5 and protocol["pfid"]["delta"] == 2
    assert [(r["tokenizer"], r["label"]) for r in report["results"]] == [
        ("grid_fsq", "full"), ("flex", "k=1"), ("flex", "k=16")]
    for r in report["results"]:
        for key in ("psnr", "ssim", "rfid", "pfid", "codebook_usage", "perplexity", "encode_images_per_s"):
            assert np.isfinite(r[key]), key
        assert r["bits_per_image"] == pytest.approx(r["tokens_per_image"] * np.log2(125))
        assert r["bits_per_pixel"] == pytest.approx(r["bits_per_image"] / 32**2)
    assert report["skipped"] == [{"source": "b_broken.png", "error": report["skipped"][0]["error"]}]
    markdown = (out / "report.md").read_text()
    assert "| tokenizer | point | tokens |" in markdown and "weights_sha256" in markdown and "## Warnings" in markdown
    for name in ("rate_distortion.png", "quality_vs_k_flex.png"):
        with Image.open(out / name) as img:
            assert img.width > 300 and img.height > 200, name
    # Originals, then one row per operating point, 2 images each (32 px + 2 px padding).
    for name, rows in (("reconstructions_grid_fsq.png", 2), ("reconstructions_flex.png", 3)):
        with Image.open(out / name) as img:
            assert img.size == (2 + 2 * 34, 2 + rows * 34), name
    # The same set and protocol again: reference statistics come from the cache, figures are unchanged.
    again = evaluate([tok_dirs["grid"]], images, tmp_path / "again", fid_weights=str(inception_path),
                     cache_dir=str(tmp_path / "cache"), num_images=3, progress=False)
    assert again["protocol"]["fid"]["reference_stats"]["from_cache"] is True
    assert again["results"][0]["rfid"] == pytest.approx(report["results"][0]["rfid"], rel=1e-9)
    assert again["skipped"] == report["skipped"]


def test_figures_match_a_direct_computation(tok_dirs: dict[str, Path], images: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_pretrained(tok_dirs["grid"])
    report = evaluate([tok], images, tmp_path / "o", fid=False, batch_size=2, progress=False)
    x = torch.stack([load_image_tensor(images / f"{n}.png", (32, 32)) for n in sorted(NAMES)])
    ids = tok.encode(x)
    usage = CodebookUsage(125)
    usage.update(ids)
    result = report["results"][0]
    assert result["psnr"] == pytest.approx(psnr(tok.decode(ids), x).mean().item(), rel=1e-5)
    assert result["codebook_usage"] == pytest.approx(usage.compute()["usage"])
    assert result["perplexity"] == pytest.approx(usage.compute()["perplexity"])
    assert "rfid" not in result and "fid" not in report["protocol"] and report["warnings"] == []


def test_rvq_depths_are_operating_points(images: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("rvq")).eval()
    report = evaluate([tok], images, tmp_path / "o", fid=False, depths=[1, 3], progress=False)
    first, full = report["results"]
    assert (first["label"], full["label"]) == ("depth=1", "depth=3")
    assert full["bits_per_image"] == pytest.approx(3 * first["bits_per_image"])
    assert len(first["residual_share"]) == 1 and len(full["residual_share"]) == 3
    assert full["residual_share"][0] == first["residual_share"][0]
    x = torch.stack([load_image_tensor(images / f"{n}.png", (32, 32)) for n in sorted(NAMES)])
    energies = tok.quantizer.residual_energies(tok.encode_latents(x), tok.encode(x, depth=3)).sum(dim=(0, 1)).double()
    assert full["residual_share"] == pytest.approx([float(1 - energies[j + 1] / energies[j]) for j in range(3)], rel=1e-4)
    assert full["residual_left"] == pytest.approx(float(energies[3] / energies[0]), rel=1e-4)
    assert "## Residual levels" in (tmp_path / "o" / "report.md").read_text()


def test_lpips_is_the_perceptual_network_with_local_weights(
    tok_dirs: dict[str, Path], images: Path, tmp_path: Path, vgg16_random_weights: Path, capsys
) -> None:
    """eval's LPIPS is discotok.losses.perceptual.LPIPS (random VGG16 weights saved to a file here)."""
    from discotok.losses.perceptual import LPIPS

    tok = Tokenizer.from_pretrained(tok_dirs["grid"])
    report = evaluate([tok], images, tmp_path / "o", fid=False, lpips_weights=str(vgg16_random_weights), progress=False)
    x = torch.stack([load_image_tensor(images / f"{n}.png", (32, 32)) for n in sorted(NAMES)])
    expected = LPIPS(vgg_weights=vgg16_random_weights)(tok.decode(tok.encode(x)), x).mean()
    assert report["results"][0]["lpips"] == pytest.approx(expected.item(), rel=1e-4)
    assert report["protocol"]["lpips"]["vgg_weights_sha256"] == sha256_file(vgg16_random_weights)
    missing = tmp_path / "vgg16-397923af.pth"
    rc, _, err = run_cli(capsys, "eval", str(tok_dirs["grid"]), str(images), "-o", str(tmp_path / "o2"),
                         "--no-fid", "--lpips-weights", str(missing), "--no-progress")
    assert rc == 1 and str(missing) in err and "download" in err


def test_missing_inception_weights_exit_1_naming_the_file(tok_dirs: dict[str, Path], images: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    rc, _, err = run_cli(capsys, "eval", str(tok_dirs["grid"]), str(images), "-o", str(tmp_path / "o"),
                         "--fid-weights", str(missing), "--no-progress")
    assert rc == 1 and err.count("\n") == 1 and str(missing) in err and "--no-fid" in err
    rc, _, err = run_cli(capsys, "eval", str(tok_dirs["grid"]), str(images), "-o", str(tmp_path / "o"),
                         "--no-fid", "--pfid-alpha", "0.1", "--pfid-delta", "2", "--no-progress")
    assert rc == 1 and "pFID needs FID" in err
