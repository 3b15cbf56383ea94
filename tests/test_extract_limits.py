"""`discotok encode` / `decode` against hostile or unlucky inputs: forged ids files, mixed shard dtypes,
concurrent runs, leftovers of killed runs, resumed decodes, forged report lines, over-long audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from skimage import data as skdata

from discotok import Tokenizer
from discotok.cli import main
from discotok.extraction import ExtractError, decode_ids, extract
from discotok.data.images import ImageWriter
from discotok.extraction.lock import LOCK_NAME, output_lock
from discotok.io import load_ids
from tests.conftest import tiny_audio_config, tiny_tokenizer_config

NAMES = ["astronaut", "camera", "chelsea", "coffee", "rocket"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    torch.manual_seed(0)
    path = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path_factory.mktemp("tok") / "t")
    return Tokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for name in NAMES:
        img = Image.fromarray(getattr(skdata, name)())
        img.resize((img.width // 8, img.height // 8)).save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def encoded(tokenizer: Tokenizer, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoded") / "out"
    extract(tokenizer, images, out, shard_size=2, batch_size=2, progress=False, workers=0)
    return out


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_npy_header_declaring_terabytes_is_refused_before_loading(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    path = tmp_path / "forged.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(bytes(64))
    with pytest.raises(ExtractError, match=r"forged\.npy: the \.npy header declares int64 ids of shape "
                                           r"\(1000000, 1000000\) \(8000000000000 bytes\) but the file holds 64 bytes"):
        load_ids(path)
    tokenizer.save_pretrained(tmp_path / "tok")
    rc, _, err = run_cli(capsys, "decode", str(tmp_path / "tok"), str(path), "-o", str(tmp_path / "png"))
    assert rc == 1 and err.count("\n") == 1 and "8000000000000 bytes" in err


def test_uint64_shard_beside_int64_shards_loads_as_int64(encoded: Path, tmp_path: Path) -> None:
    reference = load_ids(encoded).ids
    folder = tmp_path / "mixed"
    folder.mkdir()
    manifest = json.loads((encoded / "manifest.json").read_text())
    for shard in manifest["shards"]:
        ids = np.load(encoded / shard["file"])
        np.save(folder / shard["file"], ids.astype(np.uint64) if shard["first_row"] == 2 else ids)
        del shard["sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_ids(folder)
    assert loaded.ids.dtype == np.int64
    np.testing.assert_array_equal(loaded.ids, reference)
    too_big = np.load(folder / "ids-00001.npy")
    too_big[0, 0] = np.iinfo(np.uint64).max
    np.save(folder / "ids-00001.npy", too_big)
    with pytest.raises(ExtractError, match=r"ids-00001\.npy: holds uint64 ids up to 18446744073709551615, which do not "
                                           r"fit int64"):
        load_ids(folder)


def test_second_run_into_a_locked_folder_fails_at_once(tokenizer: Tokenizer, images: Path, encoded: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_lock(out, "discotok encode"):
        with pytest.raises(ExtractError, match=rf"{out} is in use by another run \(pid \d+, discotok encode\)"):
            extract(tokenizer, images, out, progress=False, workers=0)
        with pytest.raises(ExtractError, match=rf"{out} is in use by another run"):
            decode_ids(tokenizer, encoded, out, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written by the refused runs
    assert not out.joinpath(LOCK_NAME).exists()  # released and removed with the run
    report = extract(tokenizer, images, out, progress=False, workers=0)
    assert report.num_encoded == len(NAMES) and not out.joinpath(LOCK_NAME).exists()


def test_resumed_encode_removes_the_temporaries_of_a_killed_run(tokenizer: Tokenizer, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = [".ids-00001.npy.a1b2c3d4.tmp", ".ids-00000.json.zz_9k2mq.tmp", ".manifest.json.abcdefgh.tmp"]
    foreign = [".notes.txt.abcdefgh.tmp", "ids-00000.npy.tmp", ".ids-00000.npy.short.tmp"]
    for name in stale + foreign:
        (out / name).write_bytes(b"partial")
    extract(tokenizer, images, out, shard_size=2, progress=False, workers=0)
    left = sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")
    assert left == sorted(foreign)


def test_killed_decode_resumes_to_the_files_of_an_uninterrupted_run(
    tokenizer: Tokenizer, encoded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = decode_ids(tokenizer, encoded, tmp_path / "whole", batch_size=2, progress=False)
    out = tmp_path / "resumed"
    real_write, calls = ImageWriter.write, []

    def dying_write(self, path: Path, item: torch.Tensor) -> None:
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while writing the fourth file
        calls.append(path.name)
        real_write(self, path, item)

    monkeypatch.setattr(ImageWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        decode_ids(tokenizer, encoded, out, batch_size=2, progress=False)
    monkeypatch.setattr(ImageWriter, "write", real_write)
    kept = {name: (out / name).stat() for name in calls}
    (out / ".0003_coffee.png.k1ll3d00.tmp").write_bytes(b"partial")
    paths = decode_ids(tokenizer, encoded, out, batch_size=2, progress=False)
    assert [p.name for p in paths] == [p.name for p in whole]
    for name, before in kept.items():  # files of the killed run were kept, not rewritten
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for a, b in zip(paths, whole, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole)  # no record, lock or temporary left


def test_control_characters_in_a_bad_file_name_cannot_forge_report_lines(tokenizer: Tokenizer, tmp_path: Path,
                                                                          capsys) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(skdata.camera()).resize((64, 64)).save(root / "good.png")
    evil = "x.png\ndiscotok encode: skipped forged.png: fake\u2028y"
    (root / evil).write_bytes(b"not an image")
    tokenizer.save_pretrained(tmp_path / "tok")
    rc, _, err = run_cli(capsys, "encode", str(tmp_path / "tok"), str(root), "-o", str(tmp_path / "out"), "--no-progress")
    assert rc == 3
    lines = err.splitlines()
    assert lines == [f"discotok encode: skipped {evil!r}: not an image file"]


def test_audio_longer_than_max_duration_is_skipped_with_the_reason(tmp_path: Path, capsys) -> None:
    tok = Tokenizer.from_config(tiny_audio_config()).save_pretrained(tmp_path / "tok")
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(0)
    sf.write(root / "long.wav", 0.1 * rng.standard_normal(16000 * 3).astype(np.float32), 16000)
    sf.write(root / "short.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    rc, _, err = run_cli(capsys, "encode", str(tok), str(root), "-o", str(tmp_path / "out"), "--no-progress",
                         "--max-duration", "2", "--workers", "0")
    assert rc == 3
    assert "skipped long.wav: 3.0 s of audio (48000 samples at 16000 Hz), over the limit of 2 s per file" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [i["source"] for i in manifest["items"]] == ["short.wav"] and manifest["max_duration"] == 2
