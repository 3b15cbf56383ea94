"""Shared fixtures: tiny tokenizer configs for every quantizer, real photo crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from discotok.data.sample import load_sample_photos
from discotok.data.images import pil_to_tensor, resize_center_crop
from tests.hf_reference import flushed_one_thread

LATENT = 8
TINY_QUANTIZERS = {
    "vq": {"name": "vq", "dim": LATENT, "codebook_size": 64, "code_dim": 4},
    "rvq": {"name": "rvq", "dim": LATENT, "depth": 3, "codebook_size": 32},
    "fsq": {"name": "fsq", "dim": LATENT, "levels": [5, 5, 5]},
    "lfq": {"name": "lfq", "dim": LATENT, "bits": 8, "groups": 2},
    "binary": {"name": "binary", "dim": LATENT, "bits": 8},
}


ENCODERS = ("grid", "magvit2", "patch", "vit", "titok", "flexible")
DECODER_OF = {"grid": "grid", "magvit2": "magvit2", "patch": "patch", "vit": "vit", "titok": "titok", "flexible": "titok"}
TINY_NUM_TOKENS = 16


def tiny_tokenizer_config(
    quantizer: str = "fsq", image_size: int = 32, encoder: str = "grid", **encoder_kwargs
) -> dict:
    """A tokenizer small enough to train a step in well under a second on CPU.

    ``encoder`` is ``grid`` or ``magvit2`` (conv, 4x4 tokens at 32x32), ``patch`` (conv at token resolution, 4x4
    tokens), ``vit`` (patch 8 grid), ``titok`` or ``flexible`` (16 latent tokens; ``encoder_kwargs``
    such as ``causal=True`` go to the encoder).
    """
    if encoder in ("grid", "magvit2"):
        enc = dec = {"latent_dim": LATENT, "channels": 8, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 1}
    elif encoder == "patch":
        enc = dec = {"latent_dim": LATENT, "patch_size": 8, "width": 32, "depth": 1}
    else:
        vit = {"latent_dim": LATENT, "image_size": [32, 32], "patch_size": 8, "width": 32, "depth": 2, "heads": 2}
        tokens = {} if encoder == "vit" else {"num_tokens": encoder_kwargs.pop("num_tokens", TINY_NUM_TOKENS)}
        enc, dec = {**vit, **tokens}, {**vit, **tokens}
    return {
        "encoder": {"name": encoder, **enc, **encoder_kwargs},
        "quantizer": dict(TINY_QUANTIZERS[quantizer]),
        "decoder": {"name": DECODER_OF[encoder], **dec},
        "image_size": [image_size, image_size],
    }


@pytest.fixture(scope="session")
def photo_batch() -> torch.Tensor:
    """Eight 32x32 crops of scikit-image's photos, in [-1, 1]."""
    crops = []
    for img in load_sample_photos(short_side=64)[:8]:
        crops.append(pil_to_tensor(resize_center_crop(img, (32, 32))))
    return torch.stack(crops)


@pytest.fixture(scope="session")
def inception_path(tmp_path_factory: pytest.TempPathFactory):
    """A randomly initialised network of the FID InceptionV3's architecture (no real weights offline)."""
    from discotok.metrics.fid import random_inception_weights

    return random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.safetensors")


@pytest.fixture(scope="session")
def vgg16_random_weights(tmp_path_factory) -> Path:
    """A randomly initialised VGG16 feature stack saved like torchvision's file (``features.*`` keys).

    Stands in for ``vgg16-397923af.pth``, which cannot be downloaded here: LPIPS loads it
    through the real loading code.
    """
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def flush_denormals():
    """A test in one thread with denormal floats flushed to zero (``tests.hf_reference.flushed_one_thread``: small or
    random networks meet denormals, which CPUs compute about 100 times slower)."""
    with flushed_one_thread():
        yield


AUDIO_RATE = 16000


def tiny_audio_config(
    quantizer: str = "rvq", causal: bool = False, sequence: str = "lstm", decoder: str = "audio", channels: int = 1
) -> dict:
    """A waveform tokenizer (hop 64 at 16 kHz, widths 4..32) that trains a step in well under a second."""
    conv = {"latent_dim": LATENT, "channels": 4, "ratios": [4, 4, 4], "sequence": sequence, "sequence_layers": 1,
            "sequence_heads": 2, "causal": causal}
    if decoder == "audio":
        dec = {"name": "audio", **conv, "out_channels": channels}
    else:
        dec = {"name": "vocos", "latent_dim": LATENT, "out_channels": channels, "hop_length": 64, "n_fft": 256,
               "width": 32, "hidden": 64, "depth": 2}
    return {
        "modality": "audio", "sample_rate": AUDIO_RATE, "channels": channels,
        "encoder": {"name": "audio", **conv, "in_channels": channels},
        "quantizer": dict(TINY_QUANTIZERS[quantizer]),
        "decoder": dec,
    }


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory) -> Path:
    """A cache folder for the rendered espeak-ng speech, shared by the whole session."""
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speech_clips(speech_cache) -> list[torch.Tensor]:
    """Eight real speech clips (1, T) at 16 kHz of different lengths: espeak-ng speech when it is
    installed, else the synthetic tones, chirps and noise of the embedded default."""
    from discotok.data.audio import load_audio, resample_clips
    from discotok.data.speech import espeak_binary, espeak_clips, synthetic_clips

    if espeak_binary() is None:
        return synthetic_clips(AUDIO_RATE, count=8)
    paths = espeak_clips(speech_cache)[:8]
    return resample_clips([load_audio(p, 22050, 1)[0] for p in paths], 22050, AUDIO_RATE)


# The files of `speech_folder`: name -> (clip index, samples kept, sample rate, channels).
SPEECH_FILES = {
    "a/s0.wav": (0, 3001, AUDIO_RATE, 1),
    "a/s1.flac": (1, 5555, AUDIO_RATE, 1),
    "a/s2.ogg": (2, 7000, AUDIO_RATE, 1),
    "b/r22.wav": (3, 6000, 22050, 1),
    "b/stereo.wav": (4, 4500, AUDIO_RATE, 2),
}
BAD_SPEECH_FILES = ("a/broken.wav", "b/empty.wav", "b/tiny.wav", "notes.txt")


@pytest.fixture(scope="session")
def speech_folder(speech_clips, tmp_path_factory) -> Path:
    """Speech files of different lengths, formats (wav, flac, ogg), one at 22.05 kHz and one stereo
    (``SPEECH_FILES``), and bad ones (``BAD_SPEECH_FILES``): corrupt, empty, shorter than one hop
    of the tiny audio tokenizer, not audio."""
    from discotok.data.audio import resample_clips, save_audio

    root = tmp_path_factory.mktemp("speech_folder")
    for name, (clip, samples, rate, channels) in SPEECH_FILES.items():
        wave = speech_clips[clip][:, : samples * AUDIO_RATE // rate + 1]
        wave = resample_clips([wave], AUDIO_RATE, rate)[0][:, :samples] if rate != AUDIO_RATE else wave[:, :samples]
        save_audio(root / name, wave.expand(channels, -1) * torch.tensor([[1.0], [0.5]])[:channels], rate)
    (root / "a" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00 truncated")
    save_audio(root / "b" / "empty.wav", torch.zeros(1, 0), AUDIO_RATE)
    save_audio(root / "b" / "tiny.wav", speech_clips[0][:, :20], AUDIO_RATE)
    (root / "notes.txt").write_text("not audio\n")
    return root


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A reference codec made less trivial for converter tests: random Euclidean codebooks (EnCodec starts them
    at zero, which would make every id 0), Snake slopes (DAC starts them at 1) and biases; in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("codebook.embed"):
                buffer.normal_()
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 2.0)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model.eval()
