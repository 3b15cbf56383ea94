"""`discotok train` as a user runs it: the README command (shortened), swaps, sweeps, folders."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from discotok import Tokenizer

DISCOTOK = [sys.executable, "-m", "discotok.cli"]


def run_train(*overrides: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([*DISCOTOK, "train", *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_run_dir(run_dir: Path, quantizer: str, steps: int = 2, hydra: bool = True) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantizer"] == quantizer and summary["steps"] == steps
    assert math.isfinite(summary["val_psnr_db"]) and 0 < summary["val_codebook_usage"] <= 1
    assert "held out of training" in summary["val_data"]
    # the classical baselines on the same validation images: more thumbnail pixels, closer to the photo
    assert summary["val_thumbnail_4x4_psnr_db"] > summary["val_thumbnail_2x2_psnr_db"] > 0
    assert summary["bits_per_image"] == pytest.approx(summary["tokens_per_image"] * summary["bits_per_token"], rel=1e-3)
    grid = Image.open(run_dir / "reconstructions.png")
    side = summary["image_size"][0]
    assert grid.height == 2 * side + 3 * 2  # inputs above reconstructions, 2-px padding
    tok = Tokenizer.from_pretrained(run_dir / "tokenizer")
    assert tok.config["quantizer"]["name"] == quantizer
    assert (run_dir / "config.yaml").is_file() and (run_dir / "codebook_usage.png").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() or not hydra
    return summary


def test_readme_train_command_shortened(tmp_path):
    """The README's `discotok train`, at a tiny size: tokenizer dir, PNG grid, printed summary."""
    proc = run_train("experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "bits_per_image" in proc.stdout and "val_psnr_db" in proc.stdout
    check_run_dir(tmp_path / "run", "fsq")


def test_sweep_over_every_quantizer(tmp_path):
    names = "vq,rvq,fsq,lfq,binary"
    run_train("-m", f"quantizer={names}", "experiment=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}",
              "hydra.sweep.subdir=${quantizer.name}", cwd=tmp_path)
    for name in names.split(","):
        check_run_dir(tmp_path / "sweep" / name, name)


def test_data_can_be_any_folder(tmp_path, photo_batch):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for i, x in enumerate(photo_batch):
        arr = x.add(1).mul(127.5).byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    run_train(f"data={tmp_path / 'photos'}", "quantizer=fsq", "experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    check_run_dir(tmp_path / "run", "fsq")
