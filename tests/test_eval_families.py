"""`discotok eval` over converted tokenizers of different families at once: one report, one row each.

Audio: EnCodec (24 kHz), DAC (16 kHz), SNAC (24 kHz, ids at three rates) and our own (16 kHz), small with random
weights, on one speech folder read at 24 kHz; the 16 kHz ones code each clip resampled to 16 kHz and back, and
their figures equal that done by hand. Images: LlamaGen (a grid, configured for 256x256), TiTok (1-D) and
Chameleon (encode only: transformers has no decoder for it) beside ours, at 32x32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import convert
from discotok.data.audio import load_audio
from discotok.data.resample import resample
from discotok.metrics import si_snr
from tests.conftest import AUDIO_RATE, SPEECH_FILES, tiny_audio_config, tiny_tokenizer_config

pytest.importorskip("encodec")
pytest.importorskip("dac")
pytest.importorskip("snac")
REFERENCE_RATE = 24_000
SECONDS = 0.2  # of each clip: the small EnCodec's LSTM runs over 3,000 frames a second


@pytest.fixture(autouse=True)
def flush_denormals():
    """One thread with denormal floats flushed to zero (the flag is per thread): random networks meet denormals,
    which CPUs compute about 100 times slower (as in tests/test_convert_encodec48.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def audio_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.test_convert_dac import reference as dac_reference, saved as dac_saved
    from tests.test_convert_encodec import reference as encodec_reference
    from tests.test_convert_snac import CONFIGS as SNAC_CONFIGS, reference as snac_reference, saved as snac_saved

    root = tmp_path_factory.mktemp("eval_families_audio")
    torch.save(encodec_reference("small").state_dict(), root / "encodec.th")
    convert("encodec", root / "encodec.th", root / "encodec")
    convert("dac", dac_saved(dac_reference("even_rates"), root / "dac.pth"), root / "dac")
    convert("snac", snac_saved(snac_reference("24khz"), SNAC_CONFIGS["24khz"], root / "snac_hub"), root / "snac")
    torch.manual_seed(0)
    Tokenizer.from_config(tiny_audio_config("rvq")).save_pretrained(root / "ours")
    return {name: root / name for name in ("encodec", "dac", "snac", "ours")}


def test_three_converted_codecs_and_ours_in_one_report(audio_dirs, speech_folder, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    names = ["encodec", "dac", "snac", "ours"]
    with torch.jit.optimized_execution(False):  # SNAC's TorchScript Snake would recompile for every new length
        rc = main(["eval", *(str(audio_dirs[n]) for n in names), str(speech_folder), "-o", str(out), "--depth", "1", "4",
                   "--max-seconds", str(SECONDS), "--batch-size", "3", "--no-baselines", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    # --depth 4 is past SNAC's three levels and our tiny RVQ's three: left out for them, with a warning
    assert [(r["tokenizer"], r["depth"]) for r in report["results"]] == [
        ("encodec", 1), ("encodec", 4), ("dac", 1), ("dac", 4), ("snac", 1), ("ours", 1)]
    assert "warning: snac: --depth [4] left out: it takes 1..3" in captured.err and captured.err.count("left out") == 2
    rows = {r["tokenizer"]: r for r in report["results"] if r["depth"] == 1}
    assert (report["protocol"]["sample_rate"], report["protocol"]["channels"]) == (REFERENCE_RATE, 1)
    assert set(report["protocol"]["coding"]) == {"dac", "ours"}
    assert [rows[n].get("coded_at") for n in names] == [None, "16000 Hz, 1 ch", None, "16000 Hz, 1 ch"]
    header = captured.out.splitlines()[0]
    assert header.startswith("| tokenizer | point | coded at | frames/s | bits/s |") and "enc RTF | dec RTF |" in header
    assert sum(line.startswith(("| encodec |", "| dac |", "| snac |", "| ours |")) for line in captured.out.splitlines()) == 6
    seconds = sum(min(load_audio(speech_folder / name, AUDIO_RATE, 1)[0].shape[-1] / AUDIO_RATE, SECONDS)
                  for name in SPEECH_FILES)
    for name in names:
        tok = Tokenizer.from_pretrained(audio_dirs[name])
        r = rows[name]
        assert r["bits_per_second"] == pytest.approx(tok.modality.bits_per_second(1)), name
        assert r["frames_per_second"] == pytest.approx(tok.modality.sample_rate / tok.modality.hop_length), name
        assert r["seconds"] == pytest.approx(seconds, rel=1e-3), name  # the seconds it coded, at its own rate
        assert all(r[k] > 0 for k in ("encode_rtf", "decode_rtf", "mel_distance", "stft_distance")), name
    # SNAC: three rates of 4096 codes, one 12-bit id per frame of 2048 samples at depth 1.
    assert rows["snac"]["bits_per_second"] == pytest.approx(REFERENCE_RATE / 2048 * 12)
    # The 16 kHz DAC by hand: each clip read at 24 kHz, resampled to 16 kHz, coded alone, resampled back.
    dac = Tokenizer.from_pretrained(audio_dirs["dac"])
    scores = []
    for name in sorted(SPEECH_FILES):
        wave = load_audio(speech_folder / name, REFERENCE_RATE, 1)[0][:, : round(SECONDS * REFERENCE_RATE)]
        native = resample(wave, REFERENCE_RATE, AUDIO_RATE)
        x_hat = dac.decode(dac.encode(native[None], depth=1), size=native.shape[-1:])
        back = resample(x_hat, AUDIO_RATE, REFERENCE_RATE)[..., : wave.shape[-1]].clamp(-1, 1)
        scores.append(si_snr(back, wave[None]))
    assert rows["dac"]["si_snr"] == pytest.approx(torch.cat(scores).mean().item(), rel=1e-4, abs=1e-4)
    assert load_audio(out / "examples_dac" / "00_depth1.wav", REFERENCE_RATE, 1)[1].source_sample_rate == REFERENCE_RATE


def test_image_families_and_an_encode_only_tokenizer(photo_batch, tmp_path, capsys) -> None:
    pytest.importorskip("transformers")
    from PIL import Image

    from tests.test_convert_chameleon import reference as chameleon_reference
    from tests.test_convert_llamagen import checkpoint
    from tests.test_convert_titok import VARIANT_NAMES, hub_folder

    root = tmp_path / "toks"
    root.mkdir()
    convert("titok", hub_folder(root, VARIANT_NAMES[0])[0], root / "titok")
    checkpoint(root)
    convert("llamagen", root / "vq_small.pt", root / "llamagen")
    convert("transformers", chameleon_reference(root, photo_batch)[1], root / "chameleon")
    Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(root / "ours")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, x in enumerate(photo_batch[:6]):
        Image.fromarray(x.add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()).save(photos / f"{i}.png")
    names = ["llamagen", "titok", "chameleon", "ours"]
    out = tmp_path / "report"
    rc = main(["eval", *(str(root / n) for n in names), str(photos), "-o", str(out), "--image-size", "32", "--no-fid",
               "--no-baselines", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    rows = {r["tokenizer"]: r for r in report["results"]}
    assert [r["tokenizer"] for r in report["results"]] == names
    assert "| chameleon | full (encode only) | - | 64 | 448 |" in captured.out
    assert rows["llamagen"]["coded_at"] == "32x32" and "configured for 256x256" in report["protocol"]["coding"]["llamagen"]
    assert "encodes only" in report["protocol"]["coding"]["chameleon"]
    assert "psnr" not in rows["chameleon"] and "decode_images_per_s" not in rows["chameleon"]
    assert rows["chameleon"]["codebook_usage"] > 0 and rows["chameleon"]["encode_images_per_s"] > 0
    assert "reconstructions_chameleon" not in report["files"] and (out / "reconstructions_llamagen.png").is_file()
    llamagen = Tokenizer.from_pretrained(root / "llamagen")
    assert rows["llamagen"]["tokens_per_image"] == 16 * 16 and rows["titok"]["tokens_per_image"] == 16
    assert all(rows[n]["psnr"] > 0 and rows[n]["decode_images_per_s"] > 0 for n in ("llamagen", "titok", "ours"))
    assert rows["llamagen"]["bits_per_image"] == pytest.approx(256 * llamagen.bits_per_token)
