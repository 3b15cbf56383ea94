"""Audio I/O and the audio datamodule: formats, resampling, channels, bad files, folders, shards, embedded data."""

from __future__ import annotations

import io
import logging
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from discotok.data.audio import AudioLoadError, load_audio, save_audio
from discotok.data.audio_datamodule import AudioDataModule
from discotok.data.speech import HELD_OUT, espeak_binary, synthetic_clips
from tests.conftest import AUDIO_RATE


def write(path, wave: torch.Tensor, rate: int, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.T.numpy(), rate, **kwargs)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_formats_round_trip(suffix, tmp_path, speech_clips):
    wave = speech_clips[0][:, :8000]
    path = save_audio(tmp_path / f"clip{suffix}", wave, AUDIO_RATE)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    loaded, info = load_audio(path, AUDIO_RATE, 1)
    assert loaded.shape == (1, 8000) and not info.resampled and not info.channels_converted
    tolerance = 0.1 if suffix == ".ogg" else 1e-4  # vorbis is lossy, 16-bit PCM is not (to 2^-15)
    assert (loaded - wave).abs().mean() < tolerance


def test_resampling_and_channel_conversion_are_reported(tmp_path, speech_clips):
    mono = speech_clips[1][:, :16000]
    write(tmp_path / "a.wav", torch.cat([mono, -mono]), 16000)
    stereo, info = load_audio(tmp_path / "a.wav", 24000, 2)
    assert stereo.shape == (2, 24000) and info.resampled and not info.channels_converted
    assert (info.source_sample_rate, info.source_channels, info.source_frames) == (16000, 2, 16000)
    down, info = load_audio(tmp_path / "a.wav", 16000, 1)
    assert info.channels_converted and down.abs().max() < 1e-4  # the mean of x and -x
    write(tmp_path / "m.flac", mono, 16000)
    up, info = load_audio(tmp_path / "m.flac", 16000, 2)
    assert info.channels_converted and torch.equal(up[0], up[1])
    part, _ = load_audio(tmp_path / "m.flac", 16000, 1, start=0.25, duration=0.5)
    torch.testing.assert_close(part, load_audio(tmp_path / "m.flac", 16000, 1)[0][:, 4000:12000])
    assert info.to_dict()["num_samples"] == 16000 and info.duration == 1.0


def test_bad_audio_files_get_clear_errors(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    (tmp_path / "notes.txt").write_text("hello")
    write(tmp_path / "empty.wav", torch.zeros(1, 0), 16000)
    write(tmp_path / "short.wav", torch.zeros(1, 10), 16000)
    write(tmp_path / "nan.wav", torch.full((1, 100), float("nan")), 16000, subtype="FLOAT")
    cases = {
        "corrupt.wav": "corrupt or unsupported audio file",
        "notes.txt": "not an audio file",
        "empty.wav": "empty audio file",
        "short.wav": "too short: 10 samples",
        "nan.wav": "NaN or infinite",
        "missing.wav": "corrupt or unsupported|cannot read",
    }
    for name, problem in cases.items():
        with pytest.raises(AudioLoadError, match=problem) as err:
            load_audio(tmp_path / name, 16000, 1, min_samples=64)
        assert err.value.path == str(tmp_path / name)
    three = tmp_path / "three.wav"
    write(three, torch.zeros(3, 100), 16000)
    with pytest.raises(AudioLoadError, match="has 3 channels; cannot convert to 2"):
        load_audio(three, 16000, 2)
    with pytest.raises(ValueError, match="suffix"):
        save_audio(tmp_path / "x.mp4", torch.zeros(1, 10), 16000)


def test_folder_datamodule_skips_bad_files(tmp_path, speech_clips, caplog):
    folder = tmp_path / "clips"
    for i, clip in enumerate(speech_clips[:5]):
        rate = (16000, 22050, 8000)[i % 3]
        wave = torch.nn.functional.interpolate(clip[None], scale_factor=rate / 16000)[0]
        write(folder / f"{i}{('.wav', '.flac', '.ogg')[i % 3]}", torch.cat([wave, wave]) if i == 1 else wave, rate)
    (folder / "broken.flac").write_bytes(b"fLaC broken")
    (folder / "readme.txt").write_text("transcripts")
    dm = AudioDataModule(str(folder), sample_rate=AUDIO_RATE, channels=1, segment_seconds=0.25, batch_size=3,
                         val_fraction=0.2, val_seconds=1.0)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert "broken.flac" in caplog.text and "readme" not in caplog.text
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (3, 1, 4000) and batch.abs().sum() > 0
    waves, lengths = next(iter(dm.val_dataloader()))
    assert waves.shape == (1, 1, int(lengths.max())) and lengths.tolist() == [16000]  # the last file, cut to 1 s


def make_shard(path, clips: list[torch.Tensor], bad: bool = False) -> None:
    with tarfile.open(path, "w") as tar:
        members = [(f"{i:04d}.flac", clip) for i, clip in enumerate(clips)]
        for name, clip in members:
            buf = io.BytesIO()
            sf.write(buf, clip.T.numpy(), AUDIO_RATE, format="FLAC")
            add(tar, name, buf.getvalue())
        if bad:
            add(tar, "9999.wav", b"RIFF garbage")


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards(tmp_path, speech_clips, caplog):
    make_shard(tmp_path / "train-000.tar", speech_clips[:3], bad=True)
    make_shard(tmp_path / "train-001.tar", speech_clips[3:6])
    dm = AudioDataModule(str(tmp_path / "train-{000..001}.tar"), sample_rate=AUDIO_RATE, segment_seconds=0.2,
                         batch_size=4, val_samples=2, val_seconds=0.5)
    dm.setup()
    waves, lengths = next(iter(dm.val_dataloader()))
    assert lengths.tolist() == [8000, 8000]
    torch.testing.assert_close(waves[0], speech_clips[3][:, :8000], atol=1e-4, rtol=0)  # the held-out last shard
    with caplog.at_level(logging.WARNING):
        loader = iter(dm.train_dataloader())
        batches = [next(loader) for _ in range(3)]  # an endless stream over the first shard
    assert all(b.shape == (4, 1, 3200) for b in batches)
    assert "9999.wav" in caplog.text
    with pytest.raises(ValueError, match="at least 2 shards"):
        AudioDataModule(str(tmp_path / "train-000.tar")).setup()


def test_synthetic_default(caplog):
    dm = AudioDataModule("synthetic", sample_rate=8000, channels=2, segment_seconds=0.1, batch_size=3, val_samples=3)
    dm.setup()
    assert next(iter(dm.train_dataloader())).shape == (3, 2, 800)
    waves, lengths = next(iter(dm.val_dataloader()))
    assert waves.shape[:2] == (3, 2) and lengths.tolist() == [20000] * 3
    clips = synthetic_clips(8000)
    assert len(clips) == 48 and all(c.abs().max() <= 0.5 + 1e-6 for c in clips)
    assert torch.equal(clips[5], synthetic_clips(8000)[5])  # deterministic


@pytest.mark.skipif(espeak_binary() is None, reason="espeak-ng is not installed")
def test_speech_default_renders_held_out_sentences(speech_cache):
    dm = AudioDataModule("speech", sample_rate=AUDIO_RATE, segment_seconds=0.5, batch_size=4,
                         val_samples=HELD_OUT, cache_dir=str(speech_cache))
    dm.setup()
    assert len(dm.train_set.clips) == 40 and len(dm.val_set) == HELD_OUT
    waves, lengths = next(iter(dm.val_dataloader()))
    assert lengths.min() > AUDIO_RATE  # whole sentences, over a second each
    assert np.isfinite(waves.numpy()).all() and waves.abs().max() > 0.05


def test_data_folder_shortcut_picks_audio_or_images(tmp_path, speech_clips):
    from discotok.train.app import rewrite_overrides

    for i in range(3):
        save_audio(tmp_path / "clips" / f"{i}.flac", speech_clips[i], AUDIO_RATE)
    (tmp_path / "clips" / "notes.txt").write_text("x")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    clips, photos = tmp_path / "clips", tmp_path / "photos"
    assert rewrite_overrides([f"data={clips}", "experiment=audio_tiny"]) == [
        "data=audio_folder", f"data.source={clips}", "experiment=audio_tiny"]
    assert rewrite_overrides([f"data={photos}"]) == ["data=image_folder", f"data.source={photos}"]
