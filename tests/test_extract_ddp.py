"""Two-process extraction (CPU, gloo) with every quantizer while the ranks get different numbers
of batches: no quantizer may wait for the other rank (a hang fails through the timeout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from discotok import Tokenizer
from discotok.extraction import extract
from discotok.io import load_ids
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config

QUANTIZERS = {**TINY_QUANTIZERS, "scalar": {"name": "scalar", "dim": 8, "levels": [4]}}
NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket")
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five photos: with shards of 3 and batches of 2, rank 0 encodes two batches and rank 1 one."""
    root = tmp_path_factory.mktemp("photos")
    for name in NAMES:
        arr = getattr(skdata, name)()
        Image.fromarray(arr).convert("RGB").resize((40, 36)).save(root / f"{name}.png")
    return root


def encode_cli(tok_dir: Path, folder: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "discotok.cli", "encode", str(tok_dir), str(folder), "-o", str(out), "--devices", "2",
           "--accelerator", "cpu", "--shard-size", "3", "--batch-size", "2", "--workers", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"two-process extraction hung (no result in {TIMEOUT_S} s): {(err.stderr or b'')[-2000:]!r}")


# lfq is the quantizer that hung (it averaged its entropy statistics over ranks in every forward);
# the others take about 40 s each on CPU, so they run with -m slow (tests/test_collectives.py covers
# every quantizer's collectives quickly).
CASES = [q if q == "lfq" else pytest.param(q, marks=pytest.mark.slow) for q in sorted(QUANTIZERS)]


@pytest.mark.parametrize("quantizer", CASES)
def test_two_ranks_with_different_batch_counts_finish(quantizer: str, folder: Path, tmp_path: Path) -> None:
    config = tiny_tokenizer_config("fsq")
    config["quantizer"] = dict(QUANTIZERS[quantizer])
    torch.manual_seed(0)
    tok_dir = Tokenizer.from_config(config).save_pretrained(tmp_path / "tok")
    result = encode_cli(tok_dir, folder, tmp_path / "ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    single = extract(Tokenizer.from_pretrained(tok_dir), folder, tmp_path / "single", shard_size=3, batch_size=2,
                     workers=0, progress=False)
    ids, manifest, _ = load_ids(tmp_path / "ddp")
    assert ids.shape == single.ids_shape and ids.shape[0] == len(NAMES)
    assert np.array_equal(ids, load_ids(tmp_path / "single")[0])
    assert [i["source"] for i in manifest["items"]] == [i["source"] for i in single.manifest["items"]]


def test_a_continuous_tokenizer_is_refused_on_both_ranks(folder: Path, tmp_path: Path) -> None:
    config = tiny_tokenizer_config("fsq")
    config["quantizer"] = {"name": "identity", "dim": 8}
    tok_dir = Tokenizer.from_config(config).save_pretrained(tmp_path / "tok")
    result = encode_cli(tok_dir, folder, tmp_path / "ddp")
    assert result.returncode == 1 and "quantize-after" in result.stderr, result.stderr[-3000:]
