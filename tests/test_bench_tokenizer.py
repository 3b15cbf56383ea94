"""`discotok bench tokenizer`: a tokenizer directory or a named config, table and JSON (times nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from discotok import Tokenizer
from discotok.bench import main as bench_main
from discotok.bench.tokenizer import format_table, measure
from tests.conftest import tiny_tokenizer_config

COLUMNS = ("params_m", "encode_img_s", "decode_img_s", "train_s_per_img", "peak_gb", "bits_per_image")


def test_named_config_row_has_every_column() -> None:
    row = measure(["smoke"], batch_size=2, repeats=1)
    assert row["target"] == "experiment=smoke" and row["image_size"] == [32, 32] and row["device"] == "cpu"
    assert row["tokens_per_image"] == 16 and row["bits_per_image"] == 160  # 4x4 tokens of a 1024-code VQ
    for key in COLUMNS:
        assert row[key] > 0, key
    assert "experiment=smoke" in format_table([row])


def test_tokenizer_directory_from_the_command_line(tmp_path: Path, capsys) -> None:
    tok_dir = Tokenizer.from_config(tiny_tokenizer_config("rvq")).save_pretrained(tmp_path / "rvq")
    out = tmp_path / "bench.json"
    rc = bench_main(["tokenizer", str(tok_dir), "--batch-size", "2", "--repeats", "1", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    assert f"| {tok_dir} | cpu | 2 | 32x32 |" in capsys.readouterr().out
    row = json.loads(out.read_text())["rows"][0]
    assert row["bits_per_image"] == 16 * 3 * 5 and all(row[k] > 0 for k in COLUMNS)
    assert torch.get_num_threads() == 2
    assert bench_main(["tokenizer", str(tmp_path / "missing_dir")]) == 1
    assert "missing_dir' does not exist" in capsys.readouterr().err
