"""The assembled tokenizer: encoder -> quantizer -> decoder, and its on-disk format.

A tokenizer directory holds ``config.json`` (registered component names and plain
values only) and ``model.safetensors``. Loading never imports or runs anything named
by the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from discotok.decoders.generative import SAMPLER_ARGUMENTS, is_generative
from discotok.nn.modes import eval_mode
from discotok.nn.precision import precision_context, undo_autocast
from discotok.quantizers.base import Quantizer, QuantizerOutput, check_finite
from discotok.registry import DECODERS, ENCODERS, QUANTIZERS, ConfigError
from discotok.tokenizers.audio import check_audio_batch, check_audio_parts, check_lengths, mask_past
from discotok.tokenizers.config import accepts, check_prefix_length, tokenizer_config, validate_config  # noqa: F401
from discotok.tokenizers.layout import EncoderOutput, Layout
from discotok.tokenizers.weights import check_weights

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "discotok.tokenizer"
FORMAT_VERSION = 1
Perturb = Callable[[Quantizer, QuantizerOutput], QuantizerOutput]


class TokenizerLoadError(RuntimeError):
    """A tokenizer directory is missing, incomplete or inconsistent."""


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (allocation errors carry long C++ traces)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


@dataclass
class TokenizerOutput:
    """One forward pass: reconstruction, encoder output, quantizer output and token layout.

    With a generative decoder, ``decoder_loss`` and ``decoder_parts`` hold its own training
    loss, and ``x_hat`` is its one-step estimate in training mode, a sample in eval mode.
    """

    x_hat: Tensor
    z: Tensor
    quantized: QuantizerOutput
    layout: Layout
    decoder_loss: Tensor | None = None
    decoder_parts: dict[str, Tensor] = field(default_factory=dict)

    @property
    def ids(self) -> Tensor:
        return self.quantized.ids


class Tokenizer(nn.Module):
    """Encoder -> quantizer -> decoder with ``encode``/``decode`` and a safe file format.

    ``encode``, ``encode_latents`` and ``decode`` never change the model: they run it in eval
    mode without gradients (no codebook update, no random depth or prefix), whatever mode the
    caller left it in, and give each submodule its own mode back afterwards.
    """

    def __init__(self, encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module, config: dict) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.config = config

    @classmethod
    def from_config(cls, config: dict) -> "Tokenizer":
        """Build from a config of registered names and plain keyword arguments."""
        config = validate_config(json.loads(json.dumps(config)))
        config.setdefault("format", FORMAT)
        config.setdefault("version", FORMAT_VERSION)
        config.setdefault("modality", "image")
        encoder = ENCODERS.build(config["encoder"])
        quantizer = QUANTIZERS.build(config["quantizer"])
        decoder = DECODERS.build(config["decoder"])
        if config["modality"] == "audio":
            check_audio_parts(encoder, decoder, config["channels"])
        return cls(encoder, quantizer, decoder, config)

    @property
    def modality(self) -> str:
        """``"image"`` or ``"audio"``."""
        return self.config.get("modality", "image")

    @property
    def sample_rate(self) -> int | None:
        """Audio: samples per second of the waveforms the tokenizer takes and returns."""
        return self.config.get("sample_rate")

    @property
    def channels(self) -> int | None:
        """Audio: channels of the waveforms (1 mono, 2 stereo)."""
        return self.config.get("channels")

    @property
    def hop_length(self) -> int:
        """Audio: samples per frame (token position)."""
        self._require_audio("hop_length")
        return self.encoder.hop_length

    @property
    def frames_per_second(self) -> float:
        """Audio: token positions per second of audio."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames that ``num_samples`` samples encode to: ceil(num_samples / hop) (int or tensor)."""
        hop = self.hop_length
        if isinstance(num_samples, Tensor):
            return torch.div(num_samples + hop - 1, hop, rounding_mode="floor")
        return -(-int(num_samples) // hop)

    def bits_per_second(self, depth: int | None = None) -> float:
        """Audio: the bit rate of ids at ``depth`` levels (None: all) of a residual quantizer."""
        return self.frames_per_second * self.quantizer.bits_per_token / (self.quantizer.depth or 1) * self._depth(depth)

    @property
    def bit_rates(self) -> dict[int, float]:
        """Audio: bits per second at each depth 1..depth (a single-level quantizer: ``{1: rate}``)."""
        if not self.quantizer.depth:
            return {1: self.bits_per_second()}
        return {k: self.bits_per_second(k) for k in range(1, self.quantizer.depth + 1)}

    def _depth(self, depth: int | None) -> int:
        if depth is None:
            return self.quantizer.depth or 1
        if not self.quantizer.depth:
            raise ValueError(
                f"depth selects a bit rate of a residual quantizer; quantizer "
                f"{self.config['quantizer']['name']!r} has a single level (pass depth=None)"
            )
        if not 1 <= int(depth) <= self.quantizer.depth:
            raise ValueError(f"depth must lie in 1..{self.quantizer.depth}, got {depth}")
        return int(depth)

    def _require_audio(self, what: str) -> None:
        if self.modality != "audio":
            raise ValueError(f"{what} belongs to audio tokenizers; this one is a {self.modality} tokenizer")

    @property
    def image_size(self) -> tuple[int, int] | None:
        size = self.config.get("image_size")
        return tuple(size) if size else None

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def bits_per_token(self) -> float:
        return self.quantizer.bits_per_token

    @property
    def num_tokens(self) -> int:
        """Tokens per input at the configured image size (audio: use ``num_frames(num_samples)``)."""
        if self.modality == "audio":
            raise ValueError("an audio tokenizer has no fixed token count; use num_frames(num_samples)")
        return self.default_layout().num_tokens

    def default_layout(self, num_tokens: int | None = None) -> Layout:
        """The layout used to decode ids that come without one.

        A sequence layout ``Layout("sequence", (N,))`` serves any token count 1..N (a prefix).
        """
        if self.modality == "audio":
            if num_tokens is None:
                raise ValueError("an audio tokenizer's layout follows the ids: Layout('frames', (N,))")
            return Layout("frames", (int(num_tokens),))
        size = self.image_size or getattr(self.encoder, "image_size", None)
        if size is not None and hasattr(self.encoder, "token_layout"):
            layout = self.encoder.token_layout(size)
            if num_tokens is None or layout.num_tokens == num_tokens:
                return layout
            if layout.kind == "sequence":
                check_prefix_length(num_tokens, layout.num_tokens, "the token count of ids")
                return layout
        if num_tokens is not None:
            side = round(num_tokens**0.5)
            if side * side == num_tokens:
                return Layout("grid", (side, side))
        raise ValueError(
            f"cannot infer the token layout of {num_tokens} tokens for image size {self.image_size}; "
            "pass layout=Layout('grid', (h, w))"
        )

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, perturb: Perturb | None = None, **quantizer_kwargs: Any
    ) -> TokenizerOutput:
        """Encode, quantize and decode ``x``: images (B, 3, H, W) in [-1, 1], or waveforms (B, C, T).

        Audio: T is zero-padded to whole hops and ``x_hat`` cut back to T samples; with
        ``lengths`` (B,) valid samples, ``x_hat`` is zero past each item's length.
        ``perturb(quantizer, quantized) -> quantized`` (training options such as latent
        perturbation) changes the quantizer's output before the decoder sees it.
        A generative decoder also gives its own loss (see ``TokenizerOutput``).
        """
        if self.modality == "audio":
            return self._forward_audio(x, lengths, perturb, **quantizer_kwargs)
        if lengths is not None:
            raise ValueError("lengths belongs to audio tokenizers; images of a batch share one size")
        enc = self.encoder(x)
        q = self._quantize(enc.z, perturb, **quantizer_kwargs)
        if is_generative(self.decoder):
            generator = None if self.training else torch.Generator().manual_seed(self.decoder.seed)
            own = self.decoder.loss(q.z_q, enc.layout, x, keep=enc.keep, generator=generator)
            x_hat = own.x_hat if self.training else self._decode(q.z_q, enc.layout, keep=enc.keep, image_size=x.shape[-2:])
            return TokenizerOutput(x_hat, enc.z, q, enc.layout, own.loss, own.parts)
        x_hat = self._decode(q.z_q, enc.layout, keep=enc.keep, image_size=x.shape[-2:])
        return TokenizerOutput(x_hat, enc.z, q, enc.layout)

    def _quantize(self, z: Tensor, perturb: Perturb | None, **quantizer_kwargs: Any) -> QuantizerOutput:
        q = self.quantizer(z, **quantizer_kwargs)
        return q if perturb is None else perturb(self.quantizer, q)

    def _forward_audio(
        self, x: Tensor, lengths: Tensor | None, perturb: Perturb | None, **quantizer_kwargs: Any
    ) -> TokenizerOutput:
        padded, lengths, frames = self._prepare_audio(x, lengths)
        enc = self.encoder(padded, lengths=lengths)
        q = self._quantize(enc.z, perturb, **quantizer_kwargs)
        x_hat = self._decode(q.z_q, enc.layout, lengths=frames)[..., : x.shape[-1]]
        return TokenizerOutput(mask_past(x_hat, lengths), enc.z, q, enc.layout)

    def _prepare_audio(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Check a waveform batch, zero-pad it to whole hops; lengths and valid frames per item."""
        check_audio_batch(x, self.channels)
        total = x.shape[-1]
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], total).to(x.device)
        padded = F.pad(x, (0, self.num_frames(total) * self.hop_length - total))
        return padded, lengths, None if lengths is None else self.num_frames(lengths)

    def _decode(
        self,
        z_q: Tensor,
        layout: Layout,
        keep: Tensor | None = None,
        image_size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
        **sampler: Any,
    ) -> Tensor:
        """Run the decoder, passing ``keep``, ``image_size`` and ``lengths`` to decoders that take them,
        and the sampler arguments that are set (``timesteps``, ``guidance_scale``, ``seed``) to generative ones."""
        kwargs: dict[str, Any] = {}
        for name, value in sampler.items():
            if value is None:
                continue
            if name not in SAMPLER_ARGUMENTS or not accepts(self.decoder, name):
                raise ValueError(
                    f"{name} is a sampler argument of generative decoders (such as 'flow'); "
                    f"decoder {self.config['decoder']['name']!r} does not take it"
                )
            kwargs[name] = value
        if keep is not None:
            if not accepts(self.decoder, "keep"):
                raise ValueError(
                    f"the encoder drew nested-dropout prefix lengths but decoder "
                    f"{self.config['decoder']['name']!r} cannot mask tokens (no 'keep' argument)"
                )
            kwargs["keep"] = keep
        if image_size is not None and accepts(self.decoder, "image_size"):
            kwargs["image_size"] = tuple(int(s) for s in image_size)
        if lengths is not None and accepts(self.decoder, "lengths"):
            kwargs["lengths"] = lengths
        return self.decoder(z_q, layout, **kwargs)

    def _encode_prefix(self, x: Tensor, num_tokens: int) -> EncoderOutput:
        """The first ``num_tokens`` tokens of a sequence encoder's output."""
        if accepts(self.encoder, "num_tokens"):
            return self.encoder(x, num_tokens=num_tokens)
        enc = self.encoder(x)
        if enc.layout.kind != "sequence":
            raise ValueError(f"num_tokens selects a prefix of a 1-D (sequence) tokenizer; this one has {enc.layout}")
        check_prefix_length(num_tokens, enc.z.shape[1], "num_tokens")
        return EncoderOutput(enc.z[:, :num_tokens], enc.layout)

    @torch.no_grad()
    def encode(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        *,
        depth: int | None = None,
        return_layout: bool = False,
        num_tokens: int | None = None,
        precision: str = "fp32",
        **quantizer_kwargs: Any,
    ):
        """Inputs -> ids (B, N) (or (B, N, depth)); optionally the layout too.

        Images (B, 3, H, W) in [-1, 1]; ``num_tokens=k`` (sequence tokenizers): the first k ids.
        Waveforms (B, C, T) at ``sample_rate``, zero-padded to whole hops: N = num_frames(T);
        ``lengths`` (B,) valid samples per item of a zero-padded batch: item b's ids are
        ``ids[b, :num_frames(lengths[b])]``, the same as encoding it alone (the rest is padding).
        ``depth=k`` (residual quantizers): the first k levels, a lower bit rate.
        Items holding NaN or inf, in the input or in the encoder's latents, raise
        ``NonFiniteError`` (a ``ValueError``) naming their batch indices.
        ``precision``: ``fp32`` (default, bit-exact), ``bf16`` or ``auto`` (bf16 where the hardware runs it
        faster, see ``discotok.nn.precision``): the encoder runs under bf16 autocast, the quantizer's
        projection and nearest-code search stay in float32.
        """
        if getattr(self.quantizer, "continuous", False):
            self.quantizer.check_ids(None)  # a continuous quantizer refuses with a message saying what to do
        if depth is not None:
            quantizer_kwargs["depth"] = self._depth(depth)
        with eval_mode(self), precision_context(precision, x.device):
            enc = self._encoder_output(x, lengths, num_tokens)
            ids = self.quantizer(enc.z, **quantizer_kwargs).ids
        return (ids, enc.layout) if return_layout else ids

    @torch.no_grad()
    def encode_latents(
        self, x: Tensor, lengths: Tensor | None = None, *, num_tokens: int | None = None, precision: str = "fp32"
    ) -> Tensor:
        """Inputs -> the encoder's continuous latents z (B, N, D), the quantizer's input (as ``encode`` takes them),
        float32 under bf16 ``precision``."""
        with eval_mode(self), precision_context(precision, x.device):
            return undo_autocast(self._encoder_output(x, lengths, num_tokens).z)

    def _encoder_output(self, x: Tensor, lengths: Tensor | None, num_tokens: int | None) -> EncoderOutput:
        if self.modality == "audio":
            if num_tokens is not None:
                raise ValueError("num_tokens selects a prefix of 1-D image tokenizers; cut the waveform instead")
            x, lengths, _ = self._prepare_audio(x, lengths)
            check_finite(x, "the input")
            return self.encoder(x, lengths=lengths)
        if lengths is not None:
            raise ValueError("lengths belongs to audio tokenizers; images of a batch share one size")
        check_finite(x, "the input")
        return self.encoder(x) if num_tokens is None else self._encode_prefix(x, num_tokens)

    @torch.no_grad()
    def decode(
        self,
        ids: Tensor,
        layout: Layout | None = None,
        image_size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
        *,
        timesteps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        precision: str = "fp32",
    ) -> Tensor:
        """Ids -> images or waveforms in [-1, 1] (float32 under bf16); ids are checked against the codebook first.

        For a sequence layout of N tokens, ids may hold any prefix of 1..N tokens.
        ``image_size`` (H, W) overrides the output size of decoders that take one.
        Generative decoders (``flow``) sample: ``timesteps`` Euler steps, classifier-free
        ``guidance_scale`` and ``seed`` (unset: the decoder's defaults); the same seed gives the
        same images. Deterministic decoders refuse these arguments.
        Audio: ids (B, N[, depth]) -> (B, C, N * hop); ``lengths`` (B,) valid samples per item
        (as given to ``encode``) zero each item past its length, and padded frames never reach
        an item's valid samples (exactly so for the ``audio`` decoder).
        ``precision``: ``fp32`` (default), ``bf16`` or ``auto``: the decoder runs under bf16 autocast.
        """
        self.quantizer.check_ids(ids)
        sampler = {"timesteps": timesteps, "guidance_scale": guidance_scale, "seed": seed}
        with eval_mode(self), precision_context(precision, next(self.parameters()).device):
            return undo_autocast(self._decode_ids(ids, layout, image_size, lengths, **sampler))

    def _decode_ids(
        self, ids: Tensor, layout: Layout | None, image_size: Sequence[int] | None, lengths: Tensor | None,
        **sampler: Any,
    ) -> Tensor:
        if self.modality == "audio":
            return self._decode_audio(ids, layout, lengths, **sampler)
        if lengths is not None:
            raise ValueError("lengths belongs to audio tokenizers")
        layout = layout or self.default_layout(ids.shape[1])
        if layout.kind == "sequence":
            check_prefix_length(ids.shape[1], layout.num_tokens, "the token count of ids")
        elif layout.num_tokens != ids.shape[1]:
            raise ValueError(f"ids have {ids.shape[1]} tokens but the layout {layout} holds {layout.num_tokens}")
        device = next(self.parameters()).device
        z_q = self.quantizer.ids_to_codes(ids.to(device))
        return self._decode(z_q, layout, image_size=image_size, **sampler).clamp(-1, 1)

    def _decode_audio(self, ids: Tensor, layout: Layout | None, lengths: Tensor | None, **sampler: Any) -> Tensor:
        n = ids.shape[1]
        layout = layout or self.default_layout(n)
        if layout != Layout("frames", (n,)):
            raise ValueError(f"audio ids of {n} frames need the layout Layout('frames', ({n},)), got {layout}")
        device = next(self.parameters()).device
        frames = None
        if lengths is not None:
            lengths = check_lengths(lengths, ids.shape[0], n * self.hop_length).to(device)
            frames = self.num_frames(lengths)
        z_q = self.quantizer.ids_to_codes(ids.to(device))
        return mask_past(self._decode(z_q, layout, lengths=frames, **sampler), lengths).clamp(-1, 1)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``path``; files appear complete or not at all."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
            save_model(self, str(tmp / WEIGHTS_NAME))
            path.mkdir(exist_ok=True)
            for name in (WEIGHTS_NAME, CONFIG_NAME):
                os.replace(tmp / name, path / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Tokenizer":
        """Load a tokenizer directory written by ``save_pretrained`` (in eval mode).

        The config is first built on the ``meta`` device and every tensor's shape compared with
        ``model.safetensors``' header (``discotok.tokenizers.weights``), so a config asking for
        absurd sizes is refused before anything is allocated; every failure, running out of
        memory included, is a ``TokenizerLoadError`` naming the file.
        """
        path = Path(path)
        if not path.is_dir():
            raise TokenizerLoadError(f"tokenizer directory {str(path)!r} does not exist")
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise TokenizerLoadError(f"{str(path)!r} is not a complete tokenizer directory: {name} is missing")
        try:
            config = json.loads((path / CONFIG_NAME).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TokenizerLoadError(f"{path / CONFIG_NAME} is not valid JSON: {err}") from err
        except RecursionError:
            raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: JSON nested too deeply") from None
        weights = path / WEIGHTS_NAME
        try:
            with torch.device("meta"):
                shapes_only = cls.from_config(config)
        except (ConfigError, TypeError, ValueError, RuntimeError, NotImplementedError) as err:
            raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: {err}") from err
        except RecursionError:
            raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: nested too deeply") from None
        try:
            check_weights(shapes_only, weights)
        except ValueError as err:
            raise TokenizerLoadError(
                f"{weights} does not hold this tokenizer's weights (incomplete or mismatched): {err}"
            ) from None
        except (SafetensorError, OSError) as err:
            raise TokenizerLoadError(f"{weights} is not a readable safetensors file: {err}") from err
        try:
            tok = cls.from_config(config)
        except (MemoryError, RuntimeError) as err:
            raise TokenizerLoadError(f"{path / CONFIG_NAME}: cannot build the tokenizer ({_first_line(err)})") from err
        try:
            load_model(tok, str(weights), strict=True, device=str(device))
        except (SafetensorError, RuntimeError, OSError, MemoryError) as err:
            raise TokenizerLoadError(
                f"{weights} does not hold this tokenizer's weights (incomplete or mismatched): {_first_line(err)}"
            ) from err
        return tok.to(device).eval()
