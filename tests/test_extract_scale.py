"""Extraction at scale: shards, resume after a kill, batch-size independence, formats, inputs, DDP."""

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
import webdataset as wds
from PIL import Image
from skimage import data as skdata

import discotok
from discotok import Tokenizer
from discotok.extraction import ExtractError, decode_ids, extract
from discotok.extraction import shards as shards_module
from discotok.io import load_ids
from tests.conftest import tiny_tokenizer_config

NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "page", "horse", "text", "clock")


def photo(name: str, size: tuple[int, int] = (40, 36)) -> Image.Image:
    arr = getattr(skdata, name)()
    img = Image.fromarray(arr if arr.dtype == np.uint8 else (arr * 255).astype(np.uint8))
    return img.convert("RGB").resize(size)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path_factory.mktemp("tok") / "fsq")


@pytest.fixture(scope="module")
def tokenizer(tok_dir: Path) -> Tokenizer:
    return Tokenizer.from_pretrained(tok_dir)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eleven photos in two folders and a corrupt file in the middle of the sorted order."""
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(NAMES):
        sub = root / ("a" if i < 6 else "b")
        sub.mkdir(exist_ok=True)
        photo(name).save(sub / f"{name}.png")
    (root / "a" / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def reference(tokenizer: Tokenizer, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process run: 12 inputs in shards of 3."""
    out = tmp_path_factory.mktemp("reference") / "out"
    report = extract(tokenizer, folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    assert report.shards_total == 4 and report.shards_written == [0, 1, 2, 3] and report.num_encoded == 11
    return out


def rows_by_source(out: Path) -> dict[str, np.ndarray]:
    ids, manifest, _ = load_ids(out)
    sources = [item["source"] for item in manifest["items"]]
    assert len(sources) == len(set(sources)) == ids.shape[0], "duplicated or missing rows"
    return dict(zip(sources, ids))


def same_ids(a: Path, b: Path) -> bool:
    ra, rb = rows_by_source(a), rows_by_source(b)
    return ra.keys() == rb.keys() and all(np.array_equal(ra[k], rb[k]) for k in ra)


def test_manifest_lists_shards_items_and_the_corrupt_file(reference: Path) -> None:
    manifest = json.loads((reference / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == [f"ids-0000{i}.npy" for i in range(4)]
    assert [s["rows"] for s in manifest["shards"]] == [3, 2, 3, 3]  # shard 1 lost a/d_broken.jpg
    assert manifest["skipped"] == [{"source": "a/d_broken.jpg", "error": manifest["skipped"][0]["error"]}]
    assert "cannot read image" in manifest["skipped"][0]["error"] or "corrupt" in manifest["skipped"][0]["error"]
    assert [i["row"] for i in manifest["items"]] == list(range(11))
    assert manifest["output_format"] == "npy" and manifest["shard_size"] == 3


def test_killed_run_resumes_to_exactly_the_uninterrupted_ids(
    tokenizer: Tokenizer, folder: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_write = shards_module.write_shard
    calls = []

    def dies_after_two_shards(*args, **kwargs) -> None:
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(args[1])
        real_write(*args, **kwargs)

    monkeypatch.setattr(shards_module, "write_shard", dies_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        extract(tokenizer, folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    monkeypatch.setattr(shards_module, "write_shard", real_write)
    assert sorted(p.name for p in out.iterdir()) == ["ids-00000.json", "ids-00000.npy", "ids-00001.json", "ids-00001.npy"]
    report = extract(tokenizer, folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    assert report.shards_done_before == [0, 1] and report.shards_written == [2, 3]
    assert same_ids(out, reference)
    assert json.loads((out / "manifest.json").read_text())["items"] == json.loads((reference / "manifest.json").read_text())["items"]
    # A run over finished shards encodes nothing again.
    again = extract(tokenizer, folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    assert again.shards_written == [] and same_ids(out, reference)


def test_ids_do_not_depend_on_batch_size(tokenizer: Tokenizer, folder: Path, reference: Path, tmp_path: Path) -> None:
    for batch_size, workers in ((1, 0), (3, 0), (16, 0)):
        out = tmp_path / f"b{batch_size}"
        extract(tokenizer, folder, out, shard_size=3, batch_size=batch_size, progress=False, workers=workers)
        assert same_ids(out, reference), batch_size


@pytest.mark.parametrize("fmt", ["safetensors", "wds"])
def test_formats_hold_the_same_ids_and_decode(
    tokenizer: Tokenizer, folder: Path, reference: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / fmt
    extract(tokenizer, folder, out, format=fmt, shard_size=3, progress=False, workers=0)
    assert same_ids(out, reference)
    suffix = {"safetensors": ".safetensors", "wds": ".tar"}[fmt]
    assert sorted(p.name for p in out.glob("ids-*" + suffix)) == [f"ids-0000{i}{suffix}" for i in range(4)]
    if fmt == "wds":  # each sample's ids under its key, readable with webdataset itself
        samples = list(wds.WebDataset(str(out / "ids-00001.tar"), shardshuffle=False).decode())
        keys = [s["__key__"] for s in samples]
        assert keys == ["a/coffee_png", "a/coins_png"]
        reference_rows = rows_by_source(reference)
        for s in samples:
            assert np.array_equal(s["ids.npy"], reference_rows[s["json"]["source"]])
    paths = decode_ids(tokenizer, out, tmp_path / f"{fmt}_png", progress=False)
    assert len(paths) == 11 and paths[0].name == "0000_astronaut.png"


def test_text_list_and_webdataset_inputs(tokenizer: Tokenizer, folder: Path, reference: Path, tmp_path: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    listing = tmp_path / "inputs.txt"
    listing.write_text("# photos\n" + "\n".join(str(p.relative_to(folder)) for p in files) + "\n\nmissing.png\n")
    (tmp_path / "a").symlink_to(folder / "a")
    (tmp_path / "b").symlink_to(folder / "b")
    report = extract(tokenizer, listing, tmp_path / "from_list", shard_size=3, progress=False, workers=0)
    assert same_ids(tmp_path / "from_list", reference)
    assert {s["source"]: s["error"] for s in report.skipped}["missing.png"] == "listed file does not exist"

    for shard, part in enumerate(([f for f in files if f.parent.name == "a"], [f for f in files if f.parent.name == "b"])):
        with wds.TarWriter(str(tmp_path / f"data-{shard}.tar")) as sink:
            for path in part:
                stem = path.relative_to(folder).with_suffix("").as_posix()
                sink.write({"__key__": stem, path.suffix[1:]: path.read_bytes(), "cls": b"0"})
            sink.write({"__key__": f"label_only_{shard}", "cls": b"1"})
    report = extract(tokenizer, str(tmp_path / "data-{0..1}.tar"), tmp_path / "from_tar", shard_size=3, progress=False, workers=2)
    rows = rows_by_source(tmp_path / "from_tar")
    expected = {f"data-{0 if k.startswith('a/') else 1}.tar/{k.rsplit('.', 1)[0]}": v for k, v in rows_by_source(reference).items()}
    assert rows.keys() == expected.keys() and all(np.array_equal(rows[k], expected[k]) for k in rows)
    skipped = {s["source"]: s["error"] for s in report.skipped}
    assert set(skipped) == {"data-0.tar/a/d_broken", "data-0.tar/label_only_0", "data-1.tar/label_only_1"}
    assert skipped["data-0.tar/label_only_0"] == "no image member in sample (has ['cls'])"


def test_prefix_tokens_of_a_flexible_tokenizer(folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="flexible", causal=True)).eval()
    full = extract(tok, folder, tmp_path / "full", progress=False, workers=0)
    short = extract(tok, folder, tmp_path / "k4", num_tokens=4, progress=False, workers=0)
    assert full.ids_shape == (11, 16) and short.ids_shape == (11, 4)
    assert np.array_equal(load_ids(tmp_path / "k4")[0], load_ids(tmp_path / "full")[0][:, :4])
    assert short.manifest["encode_options"] == {"num_tokens": 4} and short.manifest["num_tokens"] == 4
    assert len(decode_ids(tok, tmp_path / "k4", tmp_path / "png", progress=False)) == 11
    with pytest.raises(ExtractError, match=r"--num-tokens must lie in 1..16, got 17"):
        extract(tok, folder, tmp_path / "bad", num_tokens=17, progress=False)


def test_num_tokens_refused_for_a_grid_tokenizer(tokenizer: Tokenizer, folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="--num-tokens selects a prefix of a 1-D tokenizer"):
        extract(tokenizer, folder, tmp_path / "o", num_tokens=4, progress=False)


def test_another_runs_folder_is_refused_unless_overwrite(tokenizer: Tokenizer, folder: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract(tokenizer, folder, out, shard_size=3, progress=False, workers=0)
    with pytest.raises(ExtractError, match="holds shards of a different extraction"):
        extract(tokenizer, folder, out, shard_size=3, image_size=64, progress=False, workers=0)
    report = extract(tokenizer, folder, out, shard_size=3, image_size=64, overwrite=True, progress=False, workers=0)
    assert report.ids_shape == (11, 64) and report.shards_written == [0, 1, 2, 3]


def test_version_1_output_still_decodes(tokenizer: Tokenizer, reference: Path, tmp_path: Path) -> None:
    """An ids.npy + manifest.json folder as earlier releases of `discotok encode` wrote it."""
    ids, manifest, _ = load_ids(reference)
    old = {key: manifest[key] for key in ("codebook_size", "depth", "bits_per_token", "layout", "image_size")}
    old |= {"format": "discotok.ids", "version": 1, "ids_file": "ids.npy", "ids_dtype": "int64",
            "ids_shape": list(ids.shape), "items": [{"row": i["row"], "source": i["source"]} for i in manifest["items"]],
            "skipped": manifest["skipped"], "num_tokens": 16}
    folder = tmp_path / "v1"
    folder.mkdir()
    np.save(folder / "ids.npy", ids)
    (folder / "manifest.json").write_text(json.dumps(old))
    for source in (folder, folder / "ids.npy"):
        paths = decode_ids(tokenizer, source, tmp_path / source.name, progress=False)
        assert [p.name for p in paths][:2] == ["0000_astronaut.png", "0001_camera.png"]


def test_the_package_is_callable(tokenizer: Tokenizer, folder: Path, tmp_path: Path) -> None:
    report = discotok.extract(tokenizer, folder / "b", tmp_path / "o", progress=False, workers=0)
    assert report.num_encoded == 5 and discotok.extraction.decode_ids is decode_ids


def test_two_process_ddp_run_equals_a_single_process_run(tok_dir: Path, folder: Path, reference: Path, tmp_path: Path) -> None:
    """`discotok encode --devices 2` on CPU (gloo): each rank writes its shards, rank 0 the manifest."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "discotok.cli", "encode", str(tok_dir), str(folder), "-o", str(out),
           "--devices", "2", "--accelerator", "cpu", "--shard-size", "3", "--workers", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stdout.count("encoded 11 of 12 inputs") == 1  # printed by rank 0 only
    ranks = [json.loads((out / f"ids-0000{i}.json").read_text())["rank"] for i in range(4)]
    assert ranks == [0, 1, 0, 1]
    assert same_ids(out, reference)
    assert json.loads((out / "manifest.json").read_text())["items"] == json.loads((reference / "manifest.json").read_text())["items"]


def test_corrupt_bytes_inside_a_tar_are_skipped(tokenizer: Tokenizer, tmp_path: Path) -> None:
    buf = io.BytesIO()
    photo("astronaut").save(buf, format="PNG")
    with wds.TarWriter(str(tmp_path / "s.tar")) as sink:
        sink.write({"__key__": "good", "png": buf.getvalue()})
        sink.write({"__key__": "bad", "png": buf.getvalue()[:40]})
    report = extract(tokenizer, tmp_path / "s.tar", tmp_path / "o", progress=False, workers=0)
    assert report.num_encoded == 1 and [s["source"] for s in report.skipped] == ["s.tar/bad"]
    assert "corrupt" in report.skipped[0]["error"] or "cannot read image" in report.skipped[0]["error"]


def test_ids_of_another_tokenizer_are_refused_before_decoding(reference: Path, tmp_path: Path) -> None:
    config = tiny_tokenizer_config("vq")
    config["quantizer"] = {**config["quantizer"], "codebook_size": 256}  # fsq's ids (< 125) all lie in range
    other = Tokenizer.from_config(config).eval()
    with pytest.raises(ExtractError, match="ids were made with codebook size 125, this tokenizer has 256"):
        decode_ids(other, reference, tmp_path / "png", progress=False)
    assert not (tmp_path / "png").exists()
