"""Audio datamodule: the embedded speech (or synthetic) clips, a folder of audio files, or WebDataset shards.

Training draws an endless stream of random fixed-length crops (``segment_seconds``; shorter
clips are zero-padded) at the model's sample rate and channel count, crop ``i`` a pure function
of ``(seed, i)`` (discotok/data/stream.py: each DDP rank reads its own, a resume continues). Validation gives padded batches
``(waves (B, C, T), lengths (B,))`` of whole held-out clips, each cut to ``val_seconds``.
Unreadable, corrupt, empty or too-short files are logged by name and skipped.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from discotok.data.audio import AUDIO_EXTENSIONS, AudioLoadError, audio_info, load_audio, pad_batch, resample_clips
from discotok.data.images import iter_files
from discotok.data.speech import HELD_OUT, espeak_binary, espeak_clips, synthetic_clips
from discotok.data.stream import sample_rng, stream_loader
from discotok.registry import DATAMODULES

log = logging.getLogger(__name__)
EMBEDDED = ("speech", "synthetic")
SHARDS = re.compile(r"\.tar(\.gz)?$")
RETRIES = 20


def crop(wave: Tensor, length: int) -> Tensor:
    """A random ``length``-sample crop of (C, T) ``wave``; shorter waves are zero-padded at the end."""
    extra = wave.shape[-1] - length
    if extra <= 0:
        return F.pad(wave, (0, -extra))
    start = int(torch.randint(extra + 1, ()))
    return wave[:, start : start + length]


class RandomSegments(Dataset):
    """Random crops of ``segment`` samples from clips (in-memory tensors or (path, seconds) pairs);
    sample ``i`` is a pure function of ``(seed, i)``, for any non-negative ``i`` (see ``SampleStream``)."""

    def __init__(self, clips: Sequence, segment: int, sample_rate: int, channels: int, seed: int = 0) -> None:
        self.clips = list(clips)
        self.segment = segment
        self.sample_rate = sample_rate
        self.channels = channels
        self.seed = seed

    def __getitem__(self, index: int) -> Tensor:
        with sample_rng(self.seed, index):
            return self._draw()

    def _draw(self) -> Tensor:
        for _ in range(RETRIES):
            clip = self.clips[int(torch.randint(len(self.clips), ()))]
            if isinstance(clip, Tensor):
                return crop(clip, self.segment)
            path, seconds = clip
            span = self.segment / self.sample_rate
            start = float(torch.rand(())) * max(0.0, seconds - span)
            try:
                wave, _ = load_audio(path, self.sample_rate, self.channels, start=start, duration=span + 0.01)
            except AudioLoadError as err:
                log.warning("skipping %s", err)
                continue
            return crop(wave[:, : self.segment], self.segment)
        raise RuntimeError(f"{RETRIES} clips in a row could not be read; see the warnings above")


class ShardSegments(IterableDataset):
    """An endless stream of random crops from WebDataset shards (each sample: one audio file)."""

    def __init__(self, urls: list[str], segment: int, sample_rate: int, channels: int, min_samples: int) -> None:
        self.urls = urls
        self.segment = segment
        self.sample_rate = sample_rate
        self.channels = channels
        self.min_samples = min_samples

    def __iter__(self) -> Iterator[Tensor]:
        for wave in shard_clips(self.urls, self.sample_rate, self.channels, self.min_samples, resampled=True):
            yield crop(wave, self.segment)


def shard_clips(
    urls: list[str], sample_rate: int, channels: int, min_samples: int, resampled: bool = False
) -> Iterator[Tensor]:
    """Decoded clips (C, T) from WebDataset shards; undecodable members are logged and skipped."""
    import webdataset as wds

    dataset = wds.WebDataset(
        urls, resampled=resampled, shardshuffle=False, nodesplitter=wds.split_by_node,
        handler=wds.warn_and_continue, empty_check=False,
    )
    for sample in dataset:
        key = next((k for k in sample if "." + k.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS), None)
        if key is None:
            continue
        name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}.{key}"
        try:
            wave, _ = load_audio(io.BytesIO(sample[key]), sample_rate, channels, min_samples, name=name)
        except AudioLoadError as err:
            log.warning("skipping %s", err)
            continue
        yield wave


def expand_shards(pattern: str) -> list[str]:
    """``dir/train-{000..009}.tar`` -> the shard paths (brace expansion as WebDataset does it)."""
    import webdataset as wds

    return list(wds.shardlists.expand_urls(pattern))


def readable_audio(folder: str | Path, min_seconds: float) -> list[tuple[Path, float]]:
    """(path, seconds) of the audio files under ``folder``; unreadable or too-short ones are logged and skipped."""
    good, ignored = [], 0
    for path in iter_files(folder):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            ignored += 1
            continue
        try:
            info = audio_info(path)
            if info.frames == 0 or info.duration < min_seconds:
                raise AudioLoadError(path, f"too short ({info.duration:.3f} s, need {min_seconds} s)")
            good.append((path, float(info.duration)))
        except AudioLoadError as err:
            log.warning("skipping %s", err)
    if ignored:
        log.info("ignored %d file(s) without an audio extension under %s", ignored, folder)
    return good


DEFAULT_SAMPLE_RATE, DEFAULT_CHANNELS = 16000, 1


@DATAMODULES.register("audio")
class AudioDataModule(L.LightningDataModule):
    """Random training crops and padded validation clips.

    ``source``: ``speech`` (espeak-ng speech rendered once into a cache, else synthetic
    clips), ``synthetic``, a folder of audio files (recursive; the last ``val_fraction`` of
    the sorted files held out), or WebDataset shards (a ``.tar`` path or brace pattern; the
    last shard held out). ``val_source`` (a folder or shards) overrides the held-out part.
    """

    @staticmethod
    def tokenizer_fields(config: dict) -> dict:
        """The tokenizer config fields a data config of this module implies: an audio tokenizer at its rate."""
        return {"modality": "audio", "sample_rate": int(config.get("sample_rate", DEFAULT_SAMPLE_RATE)),
                "channels": int(config.get("channels", DEFAULT_CHANNELS))}

    def __init__(
        self,
        source: str = "speech",
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        channels: int = DEFAULT_CHANNELS,
        segment_seconds: float = 0.5,
        batch_size: int = 16,
        num_workers: int = 0,
        val_samples: int = 16,
        val_seconds: float = 4.0,
        val_fraction: float = 0.1,
        min_seconds: float = 0.05,
        val_source: str | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source = str(source)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.segment = int(round(segment_seconds * sample_rate))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_samples = val_samples
        self.val_length = int(round(val_seconds * sample_rate))
        self.val_fraction = val_fraction
        self.min_samples = max(1, int(min_seconds * sample_rate))
        self.min_seconds = min_seconds
        self.val_source = val_source
        self.cache_dir = cache_dir
        self.seed = seed

    def _load(self, path: str | Path) -> Tensor | None:
        """A validation clip: the first ``val_seconds`` of ``path``, or None (logged) if unreadable."""
        seconds = self.val_length / self.sample_rate
        try:
            return load_audio(path, self.sample_rate, self.channels, self.min_samples, duration=seconds)[0]
        except AudioLoadError as err:
            log.warning("skipping %s", err)
            return None

    def _embedded(self) -> tuple[list[Tensor], list[Tensor]]:
        if self.source == "speech" and espeak_binary() is not None:
            raw = [load_audio(p, 22050, 1)[0] for p in espeak_clips(self.cache_dir)]
            clips = resample_clips(raw, 22050, self.sample_rate)
            log.info("embedded data: %d espeak-ng speech clips", len(clips))
        else:
            if self.source == "speech":
                log.warning("espeak-ng is not installed: training on synthetic tones, chirps and noise instead")
            clips = synthetic_clips(self.sample_rate)
        clips = [c.expand(self.channels, -1).contiguous() for c in clips]
        return clips[:-HELD_OUT], clips[-HELD_OUT:]

    def _val_from(self, source: str) -> list[Tensor]:
        if SHARDS.search(source):
            clips = shard_clips(expand_shards(source), self.sample_rate, self.channels, self.min_samples)
            return [c[:, : self.val_length] for _, c in zip(range(self.val_samples), clips)]
        loaded = (self._load(p) for p, _ in readable_audio(source, self.min_seconds))
        return [c for c in loaded if c is not None][: self.val_samples]

    def setup(self, stage: str | None = None) -> None:
        if self.source in EMBEDDED:
            train, val = self._embedded()
            self.train_set: Dataset = RandomSegments(train, self.segment, self.sample_rate, self.channels, self.seed)
            val = [c[:, : self.val_length] for c in val]
        elif SHARDS.search(self.source):
            urls = expand_shards(self.source)
            if self.val_source is None and len(urls) < 2:
                raise ValueError(f"shards {self.source!r}: need at least 2 shards (the last is held out) or val_source")
            train_urls = urls if self.val_source else urls[:-1]
            self.train_set = ShardSegments(train_urls, self.segment, self.sample_rate, self.channels, self.min_samples)
            val = self._val_from(self.val_source or urls[-1])
        else:
            files = readable_audio(self.source, self.min_seconds)
            n_val = 0 if self.val_source else max(1, round(len(files) * self.val_fraction))
            if len(files) - n_val < 1 or (not self.val_source and len(files) < 2):
                raise ValueError(f"audio folder {self.source!r} holds {len(files)} readable file(s); need at least 2")
            train_files = files[: len(files) - n_val]
            self.train_set = RandomSegments(train_files, self.segment, self.sample_rate, self.channels, self.seed)
            if self.val_source:
                val = self._val_from(self.val_source)
            else:
                val = [c for c in (self._load(p) for p, _ in files[-n_val:][: self.val_samples]) if c is not None]
        if not val:
            raise ValueError(f"no readable validation clips in {self.val_source or self.source!r}")
        self.val_set = val[: self.val_samples]
        origin = self.val_source or (f"the {self.source} clips" if self.source in EMBEDDED else self.source)
        self.val_description = f"{len(self.val_set)} clips from {origin}, held out of training"

    def train_dataloader(self) -> DataLoader:
        """The endless training stream for this rank: sample-exact across resumes for clips and
        folders; WebDataset shards are split by rank and resume at a fresh random position."""
        return stream_loader(self.train_set, self.batch_size, self.num_workers, self.trainer, self.seed)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, collate_fn=pad_batch)
