"""The embedded default, at full length: `discotok train` with no overrides (800 steps; 27 min on 2 shared cores)."""

from __future__ import annotations

import json

import pytest

from tests.test_train_cli import check_run_dir, run_train


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 15: measured from a fresh clone, 16.96 dB against the 4x4 thumbnail's 19.97 dB on the same tiles; "
    "strict, so the day the default clears its target this reports it"))
def test_default_train_beats_the_4x4_thumbnail_on_held_out_photos(tmp_path):
    """The default's target: on 64x64 tiles of whole photos it never trained on, at no more than 640 bits
    per image, a higher PSNR than a 4x4 thumbnail (384 bits) scaled back up, scored on the same tiles."""
    run_train(f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false", cwd=tmp_path, timeout=3600)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 800 and summary["bits_per_image"] <= 640
    assert "held out of training" in summary["val_data"]
    assert summary["val_psnr_db"] > summary["val_thumbnail_4x4_psnr_db"], summary
    check_run_dir(tmp_path / "run", summary["quantizer"], steps=800)
