"""`discotok encode` / `discotok decode`: manifests, skipped files, id checks, atomic output."""

from __future__ import annotations

import io
import json
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
from discotok.cli import main
from discotok.data.images import load_image_tensor
from discotok.extraction import ExtractError, decode_ids, extract

CONFIG = {
    "encoder": {"name": "grid", "latent_dim": 4, "channels": 8, "channel_mult": [1, 2, 2, 2]},
    "quantizer": {"name": "fsq", "dim": 4, "levels": [5, 5, 5]},
    "decoder": {"name": "grid", "latent_dim": 4, "channels": 8, "channel_mult": [1, 2, 2, 2]},
    "image_size": [32, 32],
}
NUM_TOKENS = 16  # 32x32 images, downsampling 8 -> 4x4 grid
GOOD = ["astronaut.png", "camera.png", "rgba.png", "sub/coffee.jpg"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return Tokenizer.from_config(CONFIG).save_pretrained(tmp_path_factory.mktemp("tok") / "tiny")


@pytest.fixture(scope="module")
def tokenizer(tok_dir: Path) -> Tokenizer:
    return Tokenizer.from_pretrained(tok_dir)


def small(arr: np.ndarray) -> Image.Image:
    img = Image.fromarray(arr)
    return img.resize((img.width // 8, img.height // 8))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good images (RGB, grayscale, RGBA, a JPEG in a subfolder) plus a truncated PNG, a text file, a hidden file."""
    root = tmp_path_factory.mktemp("images")
    small(skdata.astronaut()).save(root / "astronaut.png")
    small(skdata.camera()).save(root / "camera.png")
    rgba = small(skdata.chelsea()).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(root / "rgba.png")
    (root / "sub").mkdir()
    small(skdata.coffee()).save(root / "sub" / "coffee.jpg")
    buf = io.BytesIO()
    small(skdata.astronaut()).save(buf, format="PNG")
    (root / "broken.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "notes.txt").write_text("not an image\n")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


@pytest.fixture(scope="module")
def encoded(tok_dir: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoded") / "out"
    assert main(["encode", str(tok_dir), str(images), "-o", str(out), "--no-progress", "--batch-size", "3"]) == 3
    return out


def all_ids(folder: Path) -> np.ndarray:
    manifest = json.loads((folder / "manifest.json").read_text())
    return np.concatenate([np.load(folder / shard["file"]) for shard in manifest["shards"]])


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_encode_manifest_rows_and_skipped(encoded: Path, images: Path, tokenizer: Tokenizer) -> None:
    manifest = json.loads((encoded / "manifest.json").read_text())
    ids = all_ids(encoded)
    assert ids.dtype == np.int64 and ids.shape == (len(GOOD), NUM_TOKENS)
    assert manifest["ids_shape"] == list(ids.shape) and manifest["version"] == 2
    assert manifest["shards"] == [{"file": "ids-00000.npy", "rows": 4, "first_row": 0, "sha256": manifest["shards"][0]["sha256"]}]
    assert manifest["codebook_size"] == 125 and manifest["depth"] is None
    assert manifest["bits_per_token"] == pytest.approx(np.log2(125))
    assert manifest["layout"] == {"kind": "grid", "shape": [4, 4]}
    assert manifest["image_size"] == [32, 32] and "centre crop" in manifest["preprocessing"]["resize"]
    assert manifest["tokenizer"].endswith("tiny")
    assert [item["source"] for item in manifest["items"]] == sorted(GOOD)
    skipped = {s["source"]: s["error"] for s in manifest["skipped"]}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert "truncated" in skipped["broken.png"] and skipped["notes.txt"] == "not an image file"
    # Each row is its source encoded alone: grayscale and RGBA inputs were converted to RGB.
    for item in manifest["items"]:
        x = load_image_tensor(images / item["source"], (32, 32))[None]
        assert torch.equal(tokenizer.encode(x)[0], torch.from_numpy(ids[item["row"]]))
    assert leftovers(encoded) == []


def test_encode_reports_skipped_on_stderr_exit_3(tok_dir: Path, images: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = run_cli(capsys, "encode", str(tok_dir), str(images), "-o", str(tmp_path / "o"), "--no-progress")
    assert rc == 3
    assert "skipped broken.png: " in err and "skipped notes.txt: not an image file" in err
    assert "encoded 4 of 6 inputs, skipped 2" in out and "(4, 16) ids in 1 shard(s)" in out and "manifest.json" in out


def test_encode_clean_folder_exits_0_and_ignores_its_own_output(tok_dir: Path, tmp_path: Path, capsys) -> None:
    for src, target in ((tmp_path / "a", tmp_path / "a" / "tokens"), (tmp_path / "b", tmp_path / "b")):
        src.mkdir()
        small(skdata.astronaut()).save(src / "a.png")
        for _ in range(2):  # the rerun must not take ids.npy / manifest.json as inputs
            rc, out, _ = run_cli(capsys, "encode", str(tok_dir), str(src), "-o", str(target), "--no-progress")
            assert rc == 0 and "encoded 1 of 1 inputs, skipped 0" in out
            assert json.loads((target / "manifest.json").read_text())["skipped"] == []


def test_progress_bar_goes_to_stderr(tokenizer: Tokenizer, images: Path, tmp_path: Path, capsys) -> None:
    report = extract(tokenizer, images, tmp_path / "o", batch_size=2, progress=True, workers=0)
    assert report.num_encoded == 4 and len(report.skipped) == 2
    captured = capsys.readouterr()
    assert "encode" in captured.err and "6/6" in captured.err and captured.out == ""


def test_decode_round_trip(encoded: Path, tok_dir: Path, tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    rc, out, _ = run_cli(capsys, "decode", str(tok_dir), str(encoded), "-o", str(tmp_path / "png"), "--no-progress")
    assert rc == 0 and "decoded 4 images" in out
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == ["0000_astronaut.png", "0001_camera.png", "0002_rgba.png", "0003_coffee.png"]
    for name in names:
        with Image.open(tmp_path / "png" / name) as img:
            assert img.size == (32, 32) and img.mode == "RGB"
    # Decoding the shard file directly finds the manifest beside it; re-encoding the PNGs works.
    paths = decode_ids(tokenizer, encoded / "ids-00000.npy", tmp_path / "png2", progress=False)
    assert [p.name for p in paths] == names
    report = extract(tokenizer, tmp_path / "png", tmp_path / "again", progress=False, workers=0)
    assert report.ids_shape == (4, NUM_TOKENS) and report.skipped == []
    assert leftovers(tmp_path) == []


def test_decode_without_manifest_names_rows(tokenizer: Tokenizer, tmp_path: Path) -> None:
    np.save(tmp_path / "codes.npy", np.array([[0] * NUM_TOKENS, [124] * NUM_TOKENS], dtype=np.int32))
    paths = decode_ids(tokenizer, tmp_path / "codes.npy", tmp_path / "png", progress=False)
    assert [p.name for p in paths] == ["0000.png", "0001.png"]


def test_image_size_override_is_recorded_and_decoded(tok_dir: Path, images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    argv = ["encode", str(tok_dir), str(images), "-o", str(out), "--image-size", "64", "48", "--no-progress"]
    assert run_cli(capsys, *argv)[0] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"]["shape"] == [8, 6] and manifest["ids_shape"] == [4, 48]
    assert run_cli(capsys, "decode", str(tok_dir), str(out), "-o", str(tmp_path / "png"), "--no-progress")[0] == 0
    with Image.open(tmp_path / "png" / "0000_astronaut.png") as img:
        assert img.size == (48, 64)


def test_single_image_size_means_square(tok_dir: Path, images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert run_cli(capsys, "encode", str(tok_dir), str(images), "-o", str(out), "--image-size", "64", "--no-progress")[0] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image_size"] == [64, 64] and manifest["layout"]["shape"] == [8, 8]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (np.full((2, NUM_TOKENS), 125), "[0, 124]"),
        (np.full((2, NUM_TOKENS), -1), "[0, 124]"),
        (np.zeros((2, NUM_TOKENS, 2), dtype=np.int64), "(num_items, N)"),
        (np.zeros((2, NUM_TOKENS), dtype=np.float32), "integer dtype"),
        (np.zeros((2, 15), dtype=np.int64), "cannot infer the token layout of 15 tokens"),
    ],
    ids=["too-large", "negative", "extra-axis", "float", "token-count"],
)
def test_bad_ids_refused_before_decoding(tok_dir: Path, tmp_path: Path, capsys, ids: np.ndarray, expected: str) -> None:
    np.save(tmp_path / "bad.npy", ids)
    rc, _, err = run_cli(capsys, "decode", str(tok_dir), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "png"))
    assert rc == 1
    assert err.startswith("discotok decode: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err and "bad.npy" in err
    assert not (tmp_path / "png").exists()


def test_ids_not_matching_their_manifest_are_refused(encoded: Path, tokenizer: Tokenizer, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    manifest = json.loads((encoded / "manifest.json").read_text())
    del manifest["shards"][0]["sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    np.save(folder / "ids-00000.npy", all_ids(encoded)[:2])
    with pytest.raises(ExtractError, match=r"manifest.json: shape \(2, 16\) does not match the manifest's ids_shape"):
        decode_ids(tokenizer, folder, tmp_path / "png", progress=False)
    # With the hash in place, a changed shard file is caught before its shape is even read.
    manifest["shards"][0]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExtractError, match=r"ids-00000.npy: contents changed since manifest.json was written"):
        decode_ids(tokenizer, folder, tmp_path / "png", progress=False)
    assert not (tmp_path / "png").exists()


def test_missing_or_incomplete_tokenizer_exit_1(tok_dir: Path, images: Path, tmp_path: Path, capsys) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tok_dir / "config.json").read_text())
    cases = {tmp_path / "nowhere": "does not exist", partial: "model.safetensors is missing"}
    for tok, expected in cases.items():
        for command, source in (("encode", images), ("decode", tmp_path / "ids.npy")):
            rc, _, err = run_cli(capsys, command, str(tok), str(source), "-o", str(tmp_path / "o"))
            assert rc == 1 and err.startswith(f"discotok {command}: error: ") and expected in err
            assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_config_with_target_is_refused_without_running_it(
    tok_dir: Path, images: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.safetensors").write_bytes((tok_dir / "model.safetensors").read_bytes())
    sentinel = tmp_path / "pwned"
    config = {**CONFIG, "_target_": "os.system", "_args_": [f"touch {sentinel}"]}
    (evil / "config.json").write_text(json.dumps(config))
    calls: list = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    rc, _, err = run_cli(capsys, "encode", str(evil), str(images), "-o", str(tmp_path / "o"))
    assert rc == 1 and err.startswith("discotok encode: error: ") and "_target_" in err and "Traceback" not in err
    assert calls == [] and not sentinel.exists() and not (tmp_path / "o").exists()


def test_missing_input_and_unencodable_folder_exit_1(tok_dir: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "encode", str(tok_dir), str(tmp_path / "none"), "-o", str(tmp_path / "o"))
    assert rc == 1 and "input" in err and "does not exist" in err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("text")
    rc, _, err = run_cli(capsys, "encode", str(tok_dir), str(junk), "-o", str(tmp_path / "o"))
    assert rc == 1 and "skipped a.txt: not an image file" in err and "none of the 1 inputs" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_depth_refused_for_a_quantizer_without_depth(tok_dir: Path, images: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "encode", str(tok_dir), str(images), "-o", str(tmp_path / "o"), "--depth", "2")
    assert rc == 1 and "'fsq' has no depth" in err


def test_failed_shard_write_leaves_no_partial_file(
    tokenizer: Tokenizer, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dying_save(file, arr, **kwargs) -> None:
        file.write(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        extract(tokenizer, images, tmp_path / "out", progress=False, workers=0)
    assert list((tmp_path / "out").iterdir()) == []


def test_console_script(tok_dir: Path, images: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "discotok"
    cmd = [str(script), "encode", str(tok_dir), str(images), "-o", str(tmp_path / "o"), "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "skipped notes.txt" in result.stderr and (tmp_path / "o" / "ids-00000.npy").is_file()


def test_rvq_depth_option(images: Path, tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    config = {**CONFIG, "quantizer": {"name": "rvq", "dim": 4, "depth": 3, "codebook_size": 16}}
    tok = str(Tokenizer.from_config(config).save_pretrained(tmp_path / "rvq"))
    out = tmp_path / "o"
    assert run_cli(capsys, "encode", tok, str(images), "-o", str(out), "--depth", "2", "--no-progress")[0] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert all_ids(out).shape == (4, NUM_TOKENS, 2)
    assert manifest["depth"] == 2 and manifest["bits_per_token"] == 8.0 and manifest["encode_options"] == {"depth": 2}
    assert run_cli(capsys, "decode", tok, str(out), "-o", str(tmp_path / "png"), "--no-progress")[0] == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 4
    np.save(tmp_path / "deep.npy", np.zeros((1, NUM_TOKENS, 4), dtype=np.int64))
    rc, _, err = run_cli(capsys, "decode", tok, str(tmp_path / "deep.npy"), "-o", str(tmp_path / "png2"))
    assert rc == 1 and "1 <= depth <= 3" in err and not (tmp_path / "png2").exists()
    rc, _, err = run_cli(capsys, "encode", tok, str(images), "-o", str(tmp_path / "o2"), "--depth", "4")
    assert rc == 1 and "exceeds the quantizer's depth 3" in err
