"""Reading and writing audio safely: clear errors naming the file, resampling, channel conversion.

``load_audio`` reads any format libsndfile knows (wav, flac, ogg/vorbis, opus, mp3, aiff, ...)
through soundfile, converts to float32 (C, T), mixes or duplicates channels to the asked-for
count and resamples with ``discotok.data.resample.resample`` (torchaudio's windowed sinc, at
memory in proportion to the audio whatever the rates); ``AudioInfo`` records what the file was
and what was done. ``max_duration`` refuses a file longer than that from its header, before
reading it (a two-hour file would otherwise become one tensor of gigabytes). ``save_audio`` writes through ``discotok.atomic.atomic_path``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from discotok.data.resample import output_length, resample

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aif": "AIFF", ".aiff": "AIFF"}


class AudioLoadError(ValueError):
    """An input could not be used as audio; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """What a file held and how it was converted.

    ``source_*`` describe the file; ``sample_rate``/``channels``/``num_samples`` the returned
    tensor. ``resampled`` / ``channels_converted`` say whether either conversion happened.
    """

    path: str
    source_sample_rate: int
    source_channels: int
    source_frames: int
    sample_rate: int
    channels: int
    num_samples: int
    resampled: bool
    channels_converted: bool

    @property
    def duration(self) -> float:
        """Seconds of audio returned."""
        return self.num_samples / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)


def convert_channels(wave: Tensor, channels: int, name: str | os.PathLike = "audio") -> Tensor:
    """(..., C, T) -> (..., channels, T): mono duplicated to any count, any count mixed down to mono (mean)."""
    have = wave.shape[-2]
    if have == channels:
        return wave
    if channels == 1:
        return wave.mean(dim=-2, keepdim=True)
    if have == 1:
        return wave.expand(*wave.shape[:-2], channels, wave.shape[-1]).clone()
    raise AudioLoadError(name, f"has {have} channels; cannot convert to {channels} (only to mono, or mono to any)")


def _read(
    source: str | os.PathLike | BinaryIO,
    name: str | os.PathLike,
    start: float,
    duration: float | None,
    max_duration: float | None = None,
) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(source) as f:
            rate = f.samplerate
            first = min(int(start * rate), f.frames)
            frames = f.frames - first if duration is None else min(f.frames - first, int(round(duration * rate)))
            if max_duration is not None and frames > max_duration * rate:
                raise AudioLoadError(
                    name, f"{frames / rate:.1f} s of audio ({frames} samples at {rate} Hz), over the limit of "
                    f"{max_duration:g} s per file (max_duration raises it; max_seconds keeps the first seconds)")
            f.seek(first)
            data = f.read(-1 if duration is None else frames, dtype="float32", always_2d=True)
    except AudioLoadError:
        raise
    except sf.LibsndfileError as err:
        suffix = Path(str(name)).suffix.lower()
        kind = "corrupt or unsupported audio file" if suffix in AUDIO_EXTENSIONS else "not an audio file"
        raise AudioLoadError(name, f"{kind} ({err.error_string})") from None
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise AudioLoadError(name, f"cannot read audio ({err})") from None
    return data, int(rate)


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """soundfile's header information (rate, channels, frames); ``AudioLoadError`` when unreadable."""
    try:
        return sf.info(str(path))
    except sf.LibsndfileError as err:
        raise AudioLoadError(path, f"corrupt or unsupported audio file ({err.error_string})") from None
    except (RuntimeError, OSError) as err:
        raise AudioLoadError(path, f"cannot read audio ({err})") from None


def load_audio(
    path: str | os.PathLike | BinaryIO,
    sample_rate: int,
    channels: int,
    min_samples: int = 1,
    name: str | os.PathLike | None = None,
    start: float = 0.0,
    duration: float | None = None,
    max_duration: float | None = None,
) -> tuple[Tensor, AudioInfo]:
    """Read ``path`` (a file or a binary file object) as float32 (channels, T) at ``sample_rate``.

    Raises ``AudioLoadError`` naming the file for an unreadable, corrupt, empty, non-finite or
    too-short (fewer than ``min_samples`` after resampling) input. ``name`` labels a file object
    in errors and in ``AudioInfo.path``. ``start`` / ``duration`` (seconds) read only a part.
    ``max_duration`` (seconds, None: no limit) refuses, from the header and before reading, a file
    whose part to read is longer; resampling costs memory in proportion to the audio at any rate.
    """
    if sample_rate <= 0 or channels <= 0:
        raise ValueError(f"sample_rate and channels must be positive, got {sample_rate} and {channels}")
    name = str(name if name is not None else path if not isinstance(path, io.IOBase) else "<stream>")
    data, rate = _read(path, name, start, duration, max_duration)
    frames, have = data.shape
    if frames == 0:
        raise AudioLoadError(name, "empty audio file (no samples)")
    if not np.isfinite(data).all():
        raise AudioLoadError(name, "holds NaN or infinite samples")
    wave = convert_channels(torch.from_numpy(data.T.copy()), channels, name)
    resampled = rate != sample_rate
    if resampled:
        wave = resample(wave, rate, sample_rate)
    if wave.shape[-1] < min_samples:
        raise AudioLoadError(
            name,
            f"too short: {frames} samples at {rate} Hz ({wave.shape[-1]} at {sample_rate} Hz), "
            f"need at least {min_samples} at {sample_rate} Hz",
        )
    info = AudioInfo(name, rate, have, frames, sample_rate, channels, wave.shape[-1], resampled, have != channels)
    return wave.contiguous(), info


def pad_batch(items: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(C, T_i) clips -> zero-padded (B, C, max T_i) and lengths (B,)."""
    lengths = torch.tensor([w.shape[-1] for w in items])
    longest = int(lengths.max())
    return torch.stack([torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in items]), lengths


def resample_clips(clips: list[Tensor], orig_rate: int, new_rate: int) -> list[Tensor]:
    """Resample many (C, T) clips of one rate in a single batched call (the filter is built once)."""
    if orig_rate == new_rate or not clips:
        return list(clips)
    longest = max(c.shape[-1] for c in clips)
    batch = torch.stack([torch.nn.functional.pad(c, (0, longest - c.shape[-1])) for c in clips])
    out = resample(batch, orig_rate, new_rate)
    return [o[:, : output_length(c.shape[-1], orig_rate, new_rate)].contiguous() for o, c in zip(out, clips, strict=True)]


def save_audio(path: str | os.PathLike, wave: Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``wave`` (C, T), float in [-1, 1] (clipped), to ``path`` atomically.

    The format follows the suffix (.wav, .flac, .ogg, .aif/.aiff); ``subtype`` is soundfile's
    (default: 16-bit PCM for wav/flac/aiff, Vorbis for ogg).
    """
    from discotok.atomic import atomic_path

    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write audio with suffix {path.suffix!r}; use one of {sorted(WRITE_FORMATS)}")
    if wave.ndim != 2:
        raise ValueError(f"{path}: expected a waveform of shape (C, T), got {tuple(wave.shape)}")
    data = wave.detach().float().clamp(-1, 1).cpu().numpy().T
    with atomic_path(path) as tmp:
        sf.write(tmp, data, int(sample_rate), format=fmt, subtype=subtype)
    return path


def save_examples(rows: list[list[tuple[Tensor, Tensor]]], labels: list[str], folder: Path, sample_rate: int) -> Path:
    """Example clips as wavs: ``NN_original.wav`` and one ``NN_<label>.wav`` per operating point
    (``rows[i]``: (original, reconstruction) pairs (C, T) of point ``labels[i]``)."""
    for i, (original, _) in enumerate(rows[0]):
        save_audio(folder / f"{i:02d}_original.wav", original, sample_rate)
    for label, row in zip(labels, rows, strict=True):
        stem = re.sub(r"[^\w.-]+", "", label.replace("=", "")) or "full"
        for i, (_, reconstruction) in enumerate(row):
            save_audio(folder / f"{i:02d}_{stem}.wav", reconstruction, sample_rate)
    return folder


class AudioWriter:
    """Writes one decoded waveform (C, T) in [-1, 1] as ``<stem>.wav`` (16-bit PCM) at ``sample_rate``, atomically."""

    suffix = ".wav"

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def write(self, path: Path, item: Tensor) -> None:
        save_audio(path, item, self.sample_rate)
