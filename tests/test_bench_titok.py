"""The TiTok benchmark's measuring function on the tiny config, in process (fast; times nothing)."""

from discotok.bench.titok import format_table, measure


def test_measure_tiny_has_every_column() -> None:
    row = measure("titok_tiny", batch_size=2, repeats=1, threads=2)
    assert row["image_size"] == [32, 32]
    for key in ("enc_params_m", "dec_params_m", "encode_img_s", "decode_img_s", "train_s_per_img", "peak_gb"):
        assert row[key] > 0, key
    assert "titok_tiny" in format_table([row])
