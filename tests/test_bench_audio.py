"""The audio benchmark's measuring function on the tiny config, in process (fast; times nothing)."""

import pytest

from discotok.bench.audio import format_table, measure


def test_measure_tiny_has_every_column() -> None:
    row = measure("audio_tiny", seconds=1.0, repeats=1, threads=2)
    assert row["sample_rate"] == 16000 and row["frames"] == 200 and row["bits_per_second"] == 12800  # hop 80, 8 x 256
    for key in ("params_m", "encode_ms", "decode_ms", "encode_rtf", "decode_rtf"):
        assert row[key] > 0, key
    assert row["encode_rtf"] == pytest.approx(row["encode_ms"] / 1000)
    assert "audio_tiny" in format_table([row])
