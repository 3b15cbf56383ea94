"""The embedded default, at full length: `discotok train` with no overrides (about 5 min on 2 cores)."""

from __future__ import annotations

import json

import pytest

from tests.test_train_cli import check_run_dir, run_train


@pytest.mark.slow
def test_default_train_learns_on_sample_photos(tmp_path):
    run_train(f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false", cwd=tmp_path, timeout=3600)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 800 and summary["bits_per_image"] == 640.0
    # Seeded run; measured 19.95 dB and 0.68 usage on the project's CPU machine.
    assert summary["val_psnr_db"] > 19.0
    assert summary["val_codebook_usage"] > 0.4
    check_run_dir(tmp_path / "run", "vq", steps=800)
