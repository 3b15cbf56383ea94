"""`discotok bench tokenizer`: a tokenizer directory or a named config, table and JSON (times nothing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from discotok.bench import main as bench_main
from discotok.bench.tokenizer import format_table, measure
from tests.conftest import tiny_audio_config, tiny_tokenizer_config

COLUMNS = ("params_m", "encode_img_s", "decode_img_s", "train_s_per_img", "peak_gb", "bits_per_image")


def test_named_config_row_has_every_column() -> None:
    row = measure(["smoke"], batch_size=2, repeats=1)
    assert row["target"] == "experiment=smoke" and row["image_size"] == [32, 32] and row["device"] == "cpu"
    assert row["tokens_per_image"] == 16 and row["bits_per_image"] == pytest.approx(16 * math.log2(1000))  # 4x4 FSQ tokens
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


AUDIO_COLUMNS = ("params_m", "encode_rtf", "decode_rtf", "train_step_ms", "train_rtf", "peak_gb", "bits_per_second")


def test_audio_tokenizer_directory_reports_real_time_factors(tmp_path: Path, capsys) -> None:
    tok_dir = Tokenizer.from_config(tiny_audio_config("rvq")).save_pretrained(tmp_path / "audio_rvq")
    out = tmp_path / "bench.json"
    rc = bench_main(["tokenizer", str(tok_dir), "--batch-size", "2", "--seconds", "0.5", "--repeats", "1",
                     "--device", "cpu", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "encode RTF" in table and f"| {tok_dir} | cpu | 2 x 0.5 | 16000 |" in table and "img/s" not in table
    row = json.loads(out.read_text())["rows"][0]
    assert row["modality"] == "audio" and row["frames"] == 125  # 0.5 s at hop 64, 16 kHz
    assert row["bits_per_second"] == 250 * 3 * 5  # RVQ 3 x 32 codes
    assert all(row[k] > 0 for k in AUDIO_COLUMNS)
    # Real-time factors are compute seconds over the batch's seconds of audio (2 clips x 0.5 s).
    assert row["encode_rtf"] == pytest.approx(row["encode_ms"] / 1e3 / 1.0)
    assert row["train_rtf"] == pytest.approx(row["train_step_ms"] / 1e3 / 1.0)


def test_named_audio_experiment_and_a_mixed_table() -> None:
    audio = measure(["audio_tiny"], batch_size=1, repeats=1, seconds=0.5)
    assert audio["target"] == "experiment=audio_tiny" and audio["sample_rate"] == 16000
    assert audio["frames"] == 100 and audio["bits_per_second"] == 12800  # hop 80, RVQ 8 x 256
    image = {"target": "img", "modality": "image", "device": "cpu", "batch_size": 1, "image_size": [8, 8],
             "params_m": 1.0, "bits_per_image": 1.0, "encode_img_s": 1.0, "decode_img_s": 1.0,
             "train_s_per_img": 1.0, "peak_gb": 1.0, "peak_memory": "process peak RSS"}
    table = format_table([image, audio])
    assert table.count("| target |") == 2 and "encode img/s" in table and "encode RTF" in table


def test_targets_timed_in_turns_give_their_ratio(tmp_path: Path, capsys) -> None:
    out = tmp_path / "turns.json"
    rc = bench_main(["tokenizer", "smoke", "--vs", "experiment=smoke quantizer=vq", "--batch-size", "2",
                     "--repeats", "2", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    first, vq = json.loads(out.read_text())["rows"]
    assert first["target"] == "experiment=smoke" and vq["target"] == "experiment=smoke quantizer=vq"
    assert "train_vs_first" not in first
    assert vq["train_vs_first"] == pytest.approx(vq["train_s_per_img"] / first["train_s_per_img"])
    assert "| train vs 1st |" in capsys.readouterr().out
