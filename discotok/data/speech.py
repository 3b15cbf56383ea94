"""The embedded default audio: speech rendered with espeak-ng, else synthetic tones, chirps and noise.

``espeak_clips`` renders the Harvard sentences below once, with varied voices, speeds and
pitches, into a cache folder (``$XDG_CACHE_HOME/discotok`` or ``~/.cache/discotok``; the
folder appears complete or not at all) and returns the wav paths. Without espeak-ng on the
PATH, ``synthetic_clips`` makes a deterministic set of harmonic tones with vibrato, chirps
and band-limited noise bursts instead. The last ``HELD_OUT`` clips of either set (other
sentences and voices, or other seeds) are the validation clips.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
)
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us", "en-029")
VARIANTS = ("m1", "f1", "m3", "f2", "m2", "f3", "m4", "f4", "m5", "f5")
HELD_OUT = 8


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/discotok`` (default ``~/.cache/discotok``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "discotok"


def espeak_binary() -> str | None:
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def render_settings() -> list[tuple[str, str, int, int]]:
    """(sentence, voice+variant, words per minute, pitch 0-99) for every clip, deterministic."""
    return [
        (text, f"{VOICES[i % len(VOICES)]}+{VARIANTS[(i * 7) % len(VARIANTS)]}", 130 + (i * 17) % 70, 25 + (i * 29) % 60)
        for i, text in enumerate(SENTENCES)
    ]


def espeak_clips(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Render (once) and return the speech clips as wav files, in ``SENTENCES`` order."""
    binary = espeak_binary()
    if binary is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
    settings = render_settings()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256(repr((settings, version)).encode()).hexdigest()[:12]
    folder = Path(cache_dir or cache_root()) / f"speech-{key}"
    names = [f"{i:03d}.wav" for i in range(len(settings))]
    if not all((folder / n).is_file() for n in names):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name, (text, voice, speed, pitch) in zip(names, settings, strict=True):
                cmd = [binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp / name), text]
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [folder / n for n in names]


def _envelope(n: int, attack: int, release: int) -> Tensor:
    env = torch.ones(n)
    env[:attack] = torch.linspace(0, 1, attack)
    env[n - release :] = torch.linspace(1, 0, release)
    return env


def synthetic_clip(index: int, sample_rate: int, seconds: float = 2.5) -> Tensor:
    """One deterministic (1, T) clip: a harmonic tone with vibrato, a chirp, or a noise burst."""
    g = torch.Generator().manual_seed(1000 + index)
    n = int(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    kind = index % 3
    if kind == 0:
        f0 = 90 + 260 * torch.rand((), generator=g)
        vibrato = 1 + 0.02 * torch.sin(2 * math.pi * (4 + 3 * torch.rand((), generator=g)) * t)
        phase = 2 * math.pi * torch.cumsum(f0 * vibrato, 0) / sample_rate
        amps = torch.rand(6, generator=g) / torch.arange(1, 7)
        wave = sum(a * torch.sin(k * phase) for k, a in enumerate(amps, start=1))
    elif kind == 1:
        f_start, f_end = 100 + 400 * torch.rand(2, generator=g) * torch.tensor([1.0, 8.0])
        freq = f_start * (f_end / f_start) ** (t / seconds)
        wave = torch.sin(2 * math.pi * torch.cumsum(freq, 0) / sample_rate)
    else:
        noise = torch.randn(n, generator=g)
        width = int(2 + 30 * torch.rand((), generator=g))
        wave = torch.nn.functional.avg_pool1d(noise[None, None], width, 1, width // 2, count_include_pad=False)[0, 0, :n]
        bursts = (torch.sin(2 * math.pi * (1 + 3 * torch.rand((), generator=g)) * t) > 0.3).float()
        wave = wave * bursts
    wave = wave * _envelope(n, sample_rate // 50, sample_rate // 20)
    return (0.5 * wave / wave.abs().max().clamp(min=1e-6)).unsqueeze(0).float()


def synthetic_clips(sample_rate: int, count: int = 48) -> list[Tensor]:
    """``count`` synthetic clips (1, T) at ``sample_rate``; the last ``HELD_OUT`` are for validation."""
    return [synthetic_clip(i, sample_rate) for i in range(count)]


def speech_clip(sample_rate: int, channels: int, seconds: float, count: int = 1) -> torch.Tensor:
    """(count, channels, seconds * rate): consecutive stretches of espeak-ng sentences played back to
    back (repeated when needed), else of synthetic clips."""
    from discotok.data.audio import load_audio, resample_clips

    if espeak_binary() is not None:
        clips = resample_clips([load_audio(p, 22050, 1)[0] for p in espeak_clips()], 22050, sample_rate)
    else:
        clips = synthetic_clips(sample_rate)
    length = int(seconds * sample_rate)
    wave = torch.cat(clips, dim=-1)
    wave = wave.repeat(1, -(-count * length // wave.shape[-1]))[:, : count * length]
    return wave.reshape(count, length)[:, None].expand(-1, channels, -1).contiguous()
