"""Opus in Ogg through soundfile (libsndfile >= 1.1 with libopus), at a target bit rate.

libsndfile sets Opus's bit rate through ``compression_level``: 0 is 256 kbps per channel, 1 is
6 kbps (Opus's floor), linear in between (its ``ogg_opus.c``). Opus's variable bit rate spends
less than the nominal rate on easy signals, so per clip the nominal rate (steps of 500 bit/s) is
searched whose payload is nearest the target: start at the target, rescale by target / payload,
at most four encodes or until within 2%. Below the floor a clip is coded at 6 kbps per channel
and the report says the target was out of reach. Opus runs at 8, 12, 16, 24 or 48 kHz:
clips are resampled to the lowest of these at or above their rate and back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import soundfile as sf
import torch

from discotok.data.audio import resample_clips
from discotok.eval.baselines.contract import Coded, Point

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MIN_BPS, MAX_BPS, STEP_BPS = 6000, 256000, 500  # nominal bit rate per channel
SEARCH_ENCODES, SEARCH_TOLERANCE = 4, 0.02
HEADER_PACKETS = 2  # OpusHead and OpusTags


def ogg_payload_bytes(data: bytes) -> int:
    """Bytes of the Opus audio packets of an Ogg Opus stream: everything but the Ogg page headers
    and the first two packets (OpusHead, OpusTags)."""
    i = packets = current = payload = 0
    while i < len(data):
        if data[i : i + 4] != b"OggS":
            raise ValueError(f"Ogg stream: no page at byte {i}")
        count = data[i + 26]
        lacing = data[i + 27 : i + 27 + count]
        i += 27 + count + sum(lacing)
        for segment in lacing:
            current += segment
            if segment < 255:
                payload += current if packets >= HEADER_PACKETS else 0
                packets, current = packets + 1, 0
    return payload


def _nominal(bps_per_channel: float) -> int:
    """A nominal rate per channel that libsndfile can set: on the step grid, within Opus's range."""
    return int(min(max(round(bps_per_channel / STEP_BPS) * STEP_BPS, MIN_BPS), MAX_BPS))


def opus_rate(sample_rate: int) -> int:
    """The Opus sample rate a clip at ``sample_rate`` is coded at."""
    return next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])


class Opus:
    """Ogg Opus at the tokenizers' bits per second (payload, without the Ogg container)."""

    name = "opus"
    title = "Opus"
    setting_name = "nominal kbps"

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        if "OPUS" not in sf.available_subtypes("OGG"):
            raise RuntimeError(f"the Opus baseline needs libsndfile >= 1.1 with Opus; soundfile {sf.__version__} "
                               f"has libsndfile {sf.__libsndfile_version__} without it (or pass --no-baselines)")
        self.sample_rate, self.channels, self.rate = sample_rate, channels, opus_rate(sample_rate)

    def encode(self, item: np.ndarray, bps_per_channel: int) -> bytes:
        """``item`` (C, T) float at the model's rate as an Ogg Opus file at a nominal rate per channel."""
        wave = resample_clips([torch.from_numpy(item)], self.sample_rate, self.rate)[0]
        buffer = io.BytesIO()
        level = (MAX_BPS - bps_per_channel) / (MAX_BPS - MIN_BPS)
        sf.write(buffer, wave.clamp(-1, 1).T.numpy(), self.rate, format="OGG", subtype="OPUS",
                 compression_level=min(max(level, 0.0), 1.0))
        return buffer.getvalue()

    def _coded(self, item: np.ndarray, data: bytes, bps_per_channel: int) -> Coded:
        decoded, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        wave = resample_clips([torch.from_numpy(decoded.T.copy())], self.rate, self.sample_rate)[0]
        wave = torch.nn.functional.pad(wave, (0, max(0, item.shape[-1] - wave.shape[-1])))[:, : item.shape[-1]]
        payload = ogg_payload_bytes(data)
        return Coded(wave.numpy(), 8.0 * payload, 8.0 * (len(data) - payload), bps_per_channel / 1000)

    def points(self, targets: Sequence[float]) -> list[Point]:
        """A point per target; the targets under Opus's floor share one point at the floor."""
        floor = MIN_BPS * self.channels
        below = sorted({t for t in targets if t < floor})
        points = [Point(f"Opus near {t:,.0f} bits/s", float(t)) for t in sorted({t for t in targets if t >= floor})]
        if below:
            asked = ", ".join(f"{t:,.0f}" for t in below)
            points.insert(0, Point(f"Opus at its floor (asked {asked} bits/s)", float(below[0])))
        return points

    def code(self, item: np.ndarray, point: Point) -> Coded:
        goal, channels = point.target * item.shape[-1] / self.sample_rate, item.shape[0]
        files: dict[int, bytes] = {}
        nominal = _nominal(point.target / channels)
        for _ in range(SEARCH_ENCODES):
            files[nominal] = self.encode(item, nominal)
            bits = 8.0 * ogg_payload_bytes(files[nominal])
            if abs(bits - goal) <= SEARCH_TOLERANCE * goal:
                break
            nominal = _nominal(nominal * goal / max(bits, 1.0))
            if nominal in files:
                break
        best = min(files, key=lambda n: (abs(8.0 * ogg_payload_bytes(files[n]) - goal), n))
        return self._coded(item, files[best], best)

    def lowest(self, item: np.ndarray) -> Coded:
        return self._coded(item, self.encode(item, MIN_BPS), MIN_BPS)

    def describe(self) -> str:
        return (f"Ogg Opus via soundfile {sf.__version__} ({sf.__libsndfile_version__}) at {self.rate} Hz "
                f"(resampled from {self.sample_rate} Hz and back), variable bit rate; per clip the nominal rate "
                f"({MIN_BPS // 1000}..{MAX_BPS // 1000} kbps per channel, steps of {STEP_BPS} bit/s) whose payload "
                f"is nearest the tokenizer's bits per second (rescaled by target / payload, at most {SEARCH_ENCODES} "
                f"encodes, stops within {SEARCH_TOLERANCE:.0%}); header: Ogg page headers, OpusHead and OpusTags")
