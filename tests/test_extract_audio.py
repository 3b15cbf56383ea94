"""Audio extraction and decoding: variable lengths, resampling, bad files, resume, formats, inputs, checks, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import webdataset as wds

from discotok import Tokenizer
from discotok.cli import main
from discotok.data.audio import load_audio
from discotok.extraction import ExtractError, decode_ids, extract
from discotok.extraction import shards as shards_module
from discotok.io import PAD_ID, load_ids
from tests.conftest import AUDIO_RATE, BAD_SPEECH_FILES, SPEECH_FILES, tiny_audio_config, tiny_tokenizer_config

HOP = 64  # tiny_audio_config: ratios [4, 4, 4]
DEPTH, CODES = 3, 32  # its RVQ


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return Tokenizer.from_config(tiny_audio_config()).save_pretrained(tmp_path_factory.mktemp("tok") / "audio_rvq")


@pytest.fixture(scope="module")
def tokenizer(tok_dir: Path) -> Tokenizer:
    return Tokenizer.from_pretrained(tok_dir)


@pytest.fixture(scope="module")
def reference(tokenizer: Tokenizer, speech_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run: 9 files (5 good) in shards of 3, batches of 2 clips of different lengths."""
    out = tmp_path_factory.mktemp("reference") / "out"
    report = extract(tokenizer, speech_folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    assert report.shards_total == 3 and report.num_encoded == len(SPEECH_FILES)
    return out


def rows_by_source(out: Path) -> dict[str, np.ndarray]:
    """Each item's valid ids (frames, depth), checked to be padded with PAD_ID past its frames."""
    loaded = load_ids(out)
    sources = [item["source"] for item in loaded.manifest["items"]]
    assert len(sources) == len(set(sources)) == loaded.ids.shape[0], "duplicated or missing rows"
    rows = {}
    for source, row, n in zip(sources, loaded.ids, loaded.frames, strict=True):
        assert (row[n:] == PAD_ID).all() and (row[:n] >= 0).all()
        rows[source] = row[:n]
    return rows


def same_ids(a: Path, b: Path) -> bool:
    ra, rb = rows_by_source(a), rows_by_source(b)
    return ra.keys() == rb.keys() and all(np.array_equal(ra[k], rb[k]) for k in ra)


def test_items_keep_their_own_frames_equal_to_encoding_alone(
    reference: Path, tokenizer: Tokenizer, speech_folder: Path
) -> None:
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["modality"] == "audio" and manifest["version"] == 2
    assert (manifest["sample_rate"], manifest["channels"], manifest["hop_length"]) == (AUDIO_RATE, 1, HOP)
    assert manifest["frames_per_second"] == AUDIO_RATE / HOP and manifest["depth"] == DEPTH
    assert manifest["bits_per_token"] == DEPTH * math.log2(CODES)
    assert manifest["bits_per_second"] == pytest.approx(AUDIO_RATE / HOP * DEPTH * math.log2(CODES))
    assert manifest["pad_id"] == PAD_ID and manifest["layout"]["kind"] == "frames"
    assert manifest["resampled_items"] == 1 and manifest["source_sample_rates"] == {"16000": 4, "22050": 1}
    assert manifest["channels_converted_items"] == 1 and manifest["cropped_items"] == 0
    assert [item["source"] for item in manifest["items"]] == sorted(SPEECH_FILES)
    skipped = {s["source"]: s["error"] for s in manifest["skipped"]}
    assert set(skipped) == set(BAD_SPEECH_FILES)
    assert "corrupt" in skipped["a/broken.wav"] and "empty audio file" in skipped["b/empty.wav"]
    assert "too short: 20 samples" in skipped["b/tiny.wav"] and "not an audio file" in skipped["notes.txt"]
    rows = rows_by_source(reference)
    widths = []
    for item in manifest["items"]:
        wave, info = load_audio(speech_folder / item["source"], AUDIO_RATE, 1)
        assert item["samples"] == wave.shape[-1] and item["frames"] == math.ceil(wave.shape[-1] / HOP)
        assert item["source_sample_rate"] == info.source_sample_rate and item["source_channels"] == info.source_channels
        alone = tokenizer.encode(wave[None])[0].numpy()
        assert np.array_equal(rows[item["source"]], alone), item["source"]
        widths.append(item["frames"])
    assert manifest["ids_shape"] == [len(SPEECH_FILES), max(widths), DEPTH] and manifest["max_frames"] == max(widths)
    assert manifest["total_seconds"] == pytest.approx(sum(i["samples"] for i in manifest["items"]) / AUDIO_RATE)
    # npy rows are padded to their shard's longest item; load_ids pads across shards.
    first = np.load(reference / "ids-00000.npy")
    assert first.shape == (2, max(manifest["items"][0]["frames"], manifest["items"][1]["frames"]), DEPTH)


def test_killed_run_resumes_to_exactly_the_uninterrupted_ids(
    tokenizer: Tokenizer, speech_folder: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_write = shards_module.write_shard
    calls = []

    def dies_after_one_shard(*args, **kwargs) -> None:
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(args[1])
        real_write(*args, **kwargs)

    monkeypatch.setattr(shards_module, "write_shard", dies_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        extract(tokenizer, speech_folder, out, shard_size=3, batch_size=2, progress=False, workers=0)
    monkeypatch.setattr(shards_module, "write_shard", real_write)
    assert sorted(p.name for p in out.iterdir()) == ["ids-00000.json", "ids-00000.npy"]
    report = extract(tokenizer, speech_folder, out, shard_size=3, batch_size=3, progress=False, workers=0)
    assert report.shards_done_before == [0] and report.shards_written == [1, 2]
    assert same_ids(out, reference)
    expected = json.loads((reference / "manifest.json").read_text())
    assert json.loads((out / "manifest.json").read_text())["items"] == expected["items"]


@pytest.mark.parametrize("fmt", ["safetensors", "wds"])
def test_formats_hold_the_same_ids(tokenizer: Tokenizer, speech_folder: Path, reference: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / fmt
    extract(tokenizer, speech_folder, out, format=fmt, shard_size=3, batch_size=4, progress=False, workers=0)
    assert same_ids(out, reference)
    assert np.array_equal(load_ids(out).ids, load_ids(reference).ids)  # the same padded array
    items = {i["source"]: i for i in json.loads((reference / "manifest.json").read_text())["items"]}
    if fmt == "wds":  # each sample holds its valid frames only, its lengths in the json
        samples = list(wds.WebDataset(str(out / "ids-00001.tar"), shardshuffle=False).decode())
        assert [s["json"]["source"] for s in samples] == ["a/s2.ogg", "b/r22.wav"]
        for s in samples:
            item = items[s["json"]["source"]]
            assert s["ids.npy"].shape == (item["frames"], DEPTH) and s["json"]["samples"] == item["samples"]


def test_decode_writes_each_clip_at_its_length(
    reference: Path, tok_dir: Path, tokenizer: Tokenizer, speech_folder: Path, tmp_path: Path, capsys
) -> None:
    rc = main(["decode", str(tok_dir), str(reference), "-o", str(tmp_path / "wavs"), "--no-progress", "--batch-size", "3"])
    assert rc == 0 and "decoded 5 clips" in capsys.readouterr().out
    items = json.loads((reference / "manifest.json").read_text())["items"]
    names = sorted(p.name for p in (tmp_path / "wavs").iterdir())
    assert names == ["0000_s0.wav", "0001_s1.wav", "0002_s2.wav", "0003_r22.wav", "0004_stereo.wav"]
    for name, item in zip(names, items):
        info = sf.info(str(tmp_path / "wavs" / name))
        assert (info.samplerate, info.channels, info.frames) == (AUDIO_RATE, 1, item["samples"])
        wave, _ = load_audio(speech_folder / item["source"], AUDIO_RATE, 1)
        alone = tokenizer.decode(tokenizer.encode(wave[None]))[0, :, : item["samples"]]
        written, _ = load_audio(tmp_path / "wavs" / name, AUDIO_RATE, 1)
        torch.testing.assert_close(written, alone, atol=2 / 2**15, rtol=0)  # 16-bit PCM
    # One shard file finds the manifest beside it; ids without a manifest decode to frames x hop samples.
    paths = decode_ids(tokenizer, reference / "ids-00001.npy", tmp_path / "shard1", progress=False)
    assert [sf.info(str(p)).frames for p in paths] == [items[2]["samples"], items[3]["samples"]]
    bare = load_ids(reference).ids
    np.save(tmp_path / "bare.npy", bare)
    paths = decode_ids(tokenizer, tmp_path / "bare.npy", tmp_path / "bare", progress=False)
    assert [sf.info(str(p)).frames for p in paths] == [i["frames"] * HOP for i in items]


def variant(config_change) -> Tokenizer:
    config = tiny_audio_config()
    config_change(config)
    return Tokenizer.from_config(config).eval()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["encoder"].update(ratios=[4, 4, 2]) or c["decoder"].update(ratios=[4, 4, 2]),
         "ids were made with hop_length 64, this tokenizer has 32"),
        (lambda c: c.update(sample_rate=24000), "ids were made with sample_rate 16000, this tokenizer has 24000"),
        (lambda c: c["quantizer"].update(codebook_size=64), "ids were made with codebook size 32, this tokenizer has 64"),
        (lambda c: c["quantizer"].update(depth=2), "with 1 <= depth <= 2"),
    ],
    ids=["hop", "rate", "codebook", "depth"],
)
def test_a_tokenizer_that_did_not_make_the_ids_is_refused(reference: Path, tmp_path: Path, change, expected: str) -> None:
    with pytest.raises(ExtractError, match=expected) as err:
        decode_ids(variant(change), reference, tmp_path / "wavs", progress=False)
    assert str(reference / "manifest.json") in str(err.value) and not (tmp_path / "wavs").exists()


def test_ids_not_matching_their_manifest_or_padding_are_refused(reference: Path, tok_dir: Path, tokenizer: Tokenizer,
                                                                 tmp_path: Path, capsys) -> None:
    manifest = json.loads((reference / "manifest.json").read_text())
    ids = load_ids(reference).ids
    folder = tmp_path / "copy"
    folder.mkdir()

    def write(ids: np.ndarray, items: list[dict]) -> None:
        np.save(folder / "ids.npy", ids)
        shards = [{"file": "ids.npy", "rows": len(ids), "first_row": 0}]
        (folder / "manifest.json").write_text(json.dumps({**manifest, "shards": shards, "items": items}))

    short = [dict(i) for i in manifest["items"]]
    short[1]["frames"] -= 1  # the ids hold one more frame than the manifest says
    write(ids, short)
    with pytest.raises(ExtractError, match="row 1 holds ids past its 86 valid frames"):
        decode_ids(tokenizer, folder, tmp_path / "wavs", progress=False)
    longer = [dict(i) for i in manifest["items"]]
    longer[0]["frames"] += 1
    write(ids, longer)
    with pytest.raises(ExtractError, match="row 0 holds the pad id -1 inside its 48 valid frames"):
        decode_ids(tokenizer, folder, tmp_path / "wavs", progress=False)
    samples = [dict(i) for i in manifest["items"]]
    samples[4]["samples"] = 10 * HOP
    write(ids, samples)
    with pytest.raises(ExtractError, match="row 4 has 71 frames of ids but 640 samples, which are 10 frames"):
        decode_ids(tokenizer, folder, tmp_path / "wavs", progress=False)
    bad = ids.copy()
    bad[2, 3, 1] = CODES
    write(bad, manifest["items"])
    rc = main(["decode", str(tok_dir), str(folder), "-o", str(tmp_path / "wavs")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "ids must lie in [0, 31]" in err and "manifest.json" in err
    image_tok = Tokenizer.from_config(tiny_tokenizer_config("rvq"))
    with pytest.raises(ExtractError, match="ids were made by an audio tokenizer; this is an image tokenizer"):
        decode_ids(image_tok, reference, tmp_path / "wavs", progress=False)
    assert not (tmp_path / "wavs").exists()


def test_text_list_and_webdataset_audio_inputs(tokenizer: Tokenizer, speech_folder: Path, reference: Path, tmp_path: Path) -> None:
    listing = tmp_path / "clips.txt"
    listing.write_text("\n".join(str(speech_folder / name) for name in SPEECH_FILES) + "\nmissing.wav\n")
    report = extract(tokenizer, listing, tmp_path / "from_list", shard_size=3, progress=False, workers=0)
    assert [s["source"] for s in report.skipped] == ["missing.wav"]
    expected = {Path(k).name: v for k, v in rows_by_source(reference).items()}
    rows = {Path(k).name: v for k, v in rows_by_source(tmp_path / "from_list").items()}
    assert rows.keys() == expected.keys() and all(np.array_equal(rows[k], expected[k]) for k in rows)

    with wds.TarWriter(str(tmp_path / "clips.tar")) as sink:
        for name in sorted(SPEECH_FILES):
            path = speech_folder / name
            sink.write({"__key__": path.stem, path.suffix[1:]: path.read_bytes(), "txt": b"transcript"})
        sink.write({"__key__": "text_only", "txt": b"no audio here"})
    report = extract(tokenizer, tmp_path / "clips.tar", tmp_path / "from_tar", format="wds", progress=False, workers=0)
    assert report.skipped == [{"source": "clips.tar/text_only", "error": "no audio member in sample (has ['txt'])"}]
    rows = {k.split("/")[1]: v for k, v in rows_by_source(tmp_path / "from_tar").items()}
    expected = {Path(k).stem: v for k, v in rows_by_source(reference).items()}
    assert rows.keys() == expected.keys() and all(np.array_equal(rows[k], expected[k]) for k in rows)


def test_depth_and_max_seconds(tok_dir: Path, speech_folder: Path, reference: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "d1"
    rc = main(["encode", str(tok_dir), str(speech_folder), "-o", str(out), "--depth", "1", "--max-seconds", "0.3",
               "--no-progress", "--workers", "0"])
    assert rc == 3  # the bad files were skipped
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["depth"] == 1 and manifest["bits_per_second"] == pytest.approx(AUDIO_RATE / HOP * math.log2(CODES))
    full_items = json.loads((reference / "manifest.json").read_text())["items"]
    assert manifest["max_seconds"] == 0.3 and manifest["cropped_items"] == sum(i["samples"] > 4800 for i in full_items) > 0
    assert [i["samples"] for i in manifest["items"]] == [min(i["samples"], 4800) for i in full_items]
    assert [i["frames"] for i in manifest["items"]] == [math.ceil(min(i["samples"], 4800) / HOP) for i in full_items]
    ids = load_ids(out).ids
    assert ids.shape == (5, 75, 1)  # 4800 samples: 75 frames
    full = rows_by_source(reference)["a/s0.wav"]  # not cropped: its one-level ids are the first level of the full ones
    assert np.array_equal(ids[0, :47], full[:, :1])
    assert main(["decode", str(tok_dir), str(out), "-o", str(tmp_path / "wavs"), "--no-progress"]) == 0
    assert sf.info(str(tmp_path / "wavs" / "0001_s1.wav")).frames == 4800
    for argv, expected in (
        (["--num-tokens", "4"], "--num-tokens selects a prefix of a 1-D tokenizer"),
        (["--image-size", "32"], "--image-size) applies to image tokenizers"),
        (["--depth", "4"], "exceeds the quantizer's depth 3"),
    ):
        capsys.readouterr()
        assert main(["encode", str(tok_dir), str(speech_folder), "-o", str(tmp_path / "x"), *argv]) == 1
        assert expected in capsys.readouterr().err


def test_two_process_ddp_run_equals_a_single_process_run(tok_dir: Path, speech_folder: Path, reference: Path, tmp_path: Path) -> None:
    """`discotok encode --devices 2` on CPU (gloo) over audio: rank r writes shards r, r + 2, ...; rank 0 the manifest."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "discotok.cli", "encode", str(tok_dir), str(speech_folder), "-o", str(out),
           "--devices", "2", "--accelerator", "cpu", "--shard-size", "3", "--batch-size", "2", "--workers", "0",
           "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stdout.count("encoded 5 of 9 inputs") == 1
    assert [json.loads((out / f"ids-0000{i}.json").read_text())["rank"] for i in range(3)] == [0, 1, 0]
    assert same_ids(out, reference)
    ours, theirs = (json.loads((d / "manifest.json").read_text()) for d in (out, reference))
    assert ours["items"] == theirs["items"] and ours["ids_shape"] == theirs["ids_shape"]
