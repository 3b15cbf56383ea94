"""The assembled tokenizer: encoder -> quantizer -> decoder, with its modality and file format.

A tokenizer directory holds ``config.json`` (registered component names and plain
values only) and ``model.safetensors`` (``discotok.tokenizers.files``). Loading never
imports or runs anything named by the files.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from discotok.decoders.base import Decoder
from discotok.encoders.base import Encoder, EncoderOutput
from discotok.layout import Layout
from discotok.nn.int8 import has_linear, int8_copy
from discotok.nn.modes import eval_mode
from discotok.nn.precision import precision_context, undo_autocast
from discotok.quantizers.base import Quantizer, QuantizerOutput, check_finite
from discotok.registry import DECODERS, ENCODERS, MODALITIES, QUANTIZERS, ConfigError
from discotok.tokenizers.config import DEFAULT_MODALITY, tokenizer_config, validate_config  # noqa: F401
from discotok.tokenizers.files import TokenizerLoadError, load_directory, save_directory  # noqa: F401
from discotok.tokenizers.hub import resolve

FORMAT = "discotok.tokenizer"
FORMAT_VERSION = 1
Perturb = Callable[[Quantizer, QuantizerOutput], QuantizerOutput]


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

    ``modality`` (``discotok.modalities``) owns what is specific to the signal: batch checks and
    padding, layouts of ids, rates (``tok.modality.num_tokens`` of an image tokenizer,
    ``tok.modality.sample_rate`` / ``num_frames`` / ``bits_per_second`` of an audio one).

    ``encode``, ``encode_latents`` and ``decode`` never change the model: they run it in eval
    mode without gradients (no codebook update, no random depth or prefix), whatever mode the
    caller left it in, and give each submodule its own mode back afterwards.
    """

    def __init__(self, encoder: Encoder, quantizer: Quantizer, decoder: Decoder, config: dict) -> None:
        super().__init__()
        if encoder.draws_prefix and not decoder.masks_tokens:
            raise ConfigError(
                f"config: encoder {config['encoder']['name']!r} draws nested-dropout prefix lengths but decoder "
                f"{config['decoder']['name']!r} cannot mask tokens"
            )
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.config = config
        self.modality = MODALITIES.get(config.get("modality", DEFAULT_MODALITY))(config, encoder, quantizer, decoder)

    @classmethod
    def from_config(cls, config: dict) -> "Tokenizer":
        """Build from a config of registered names and plain keyword arguments."""
        config = validate_config(json.loads(json.dumps(config)))
        config.setdefault("format", FORMAT)
        config.setdefault("version", FORMAT_VERSION)
        config.setdefault("modality", DEFAULT_MODALITY)
        return cls(ENCODERS.build(config["encoder"]), QUANTIZERS.build(config["quantizer"]),
                   DECODERS.build(config["decoder"]), config)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def bits_per_token(self) -> float:
        return self.quantizer.bits_per_token

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, perturb: Perturb | None = None,
        condition: Tensor | None = None, **quantizer_kwargs: Any
    ) -> TokenizerOutput:
        """Encode, quantize and decode ``x``: images (B, 3, H, W) in [-1, 1], or waveforms (B, C, T).

        Audio: T is zero-padded to whole hops and ``x_hat`` cut back to T samples; with
        ``lengths`` (B,) valid samples, ``x_hat`` is zero past each item's length.
        ``perturb(quantizer, quantized) -> quantized`` (training options such as latent
        perturbation) changes the quantizer's output before the decoder sees it.
        A generative decoder also gives its own loss (see ``TokenizerOutput``).
        ``condition``: what a conditioned decoder needs (as in ``decode``).
        """
        batch = self.modality.prepare(x, lengths)
        enc = self.encoder(batch.x, lengths=batch.lengths)
        q = self.quantizer(enc.z, **quantizer_kwargs)
        q = q if perturb is None else perturb(self.quantizer, q)
        if self.decoder.generative:
            generator = None if self.training else torch.Generator().manual_seed(self.decoder.seed)
            own = self.decoder.loss(q.z_q, enc.layout, batch.x, keep=enc.keep, generator=generator)
            x_hat = own.x_hat if self.training else self._decode(q.z_q, enc.layout, batch.size, batch.frames, enc.keep)
            return TokenizerOutput(self.modality.finish(x_hat, batch), enc.z, q, enc.layout, own.loss, own.parts)
        if self.training and torch.is_grad_enabled():
            self.decoder.init_from_batch(q.z_q, enc.layout, batch.x)
        x_hat = self._decode(q.z_q, enc.layout, batch.size, batch.frames, enc.keep, condition=condition)
        return TokenizerOutput(self.modality.finish(x_hat, batch), enc.z, q, enc.layout)

    def _decode(self, z_q: Tensor, layout: Layout, size: Sequence[int] | None, frames: Tensor | None,
                keep: Tensor | None = None, decoder: Decoder | None = None, condition: Tensor | None = None,
                **sampler: Any) -> Tensor:
        """Run the decoder (ours, or ``decoder``, its int8 copy) with the output ``size`` and valid ``frames`` per
        item, the ``condition`` only conditioned decoders take (and need), and the sampler arguments that are set
        (``timesteps``, ``guidance_scale``, ``seed``, ``noise``), which only generative decoders take."""
        sampler = {k: v for k, v in sampler.items() if v is not None}
        if sampler and not self.decoder.generative:
            raise ValueError(
                f"{', '.join(sampler)}: sampler argument(s) of generative decoders (such as 'flow'); "
                f"decoder {self.config['decoder']['name']!r} does not take them"
            )
        if condition is not None and not self.decoder.conditioned:
            raise ValueError(
                f"condition: only a conditioned decoder (such as a TA-TiTok's, with text guidance) takes one; "
                f"decoder {self.config['decoder']['name']!r} is not conditioned"
            )
        given = None if condition is None else condition.to(z_q.device)
        conditions = {"condition": given} if self.decoder.conditioned else {}
        decoder = self.decoder if decoder is None else decoder
        return decoder(z_q, layout, keep=keep, size=size, lengths=frames, **sampler, **conditions)

    def _networks(self, precision: str) -> tuple[Encoder, Decoder]:
        """The encoder and decoder to run in the resolved ``precision``: ours, or for int8 copies whose linear
        layers are dynamically quantized (``discotok.nn.int8``), made again whenever the weights have changed."""
        if precision != "int8":
            return self.encoder, self.decoder
        state = tuple((t.data_ptr(), t._version) for t in [*self.encoder.parameters(), *self.decoder.parameters()])
        cached = self.__dict__.get("_int8_networks")
        if cached is None or cached[0] != state:
            for role, net in (("encoder", self.encoder), ("decoder", self.decoder)):
                if not has_linear(net):
                    warnings.warn(f"precision int8 quantizes linear layers only; {role} "
                                  f"{self.config[role]['name']!r} has none and runs in float32", stacklevel=3)
            cached = (state, int8_copy(self.encoder), int8_copy(self.decoder))
            self.__dict__["_int8_networks"] = cached
        return cached[1], cached[2]

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
        Waveforms (B, C, T) at ``modality.sample_rate``, zero-padded to whole hops: N = num_frames(T);
        ``lengths`` (B,) valid samples per item of a zero-padded batch: item b's ids are
        ``ids[b, :num_frames(lengths[b])]``, the same as encoding it alone (the rest is padding).
        ``num_frames`` is the encoder's rule (X-Codec's: transformers' floor((L - 80) / 320) + 1, and with
        ``lengths`` N is the longest item's).
        ``depth=k`` (residual quantizers): the first k levels, a lower bit rate.
        Items holding NaN or inf, in the input or in the encoder's latents, raise
        ``NonFiniteError`` (a ``ValueError``) naming their batch indices.
        ``precision``: ``fp32`` (default, bit-exact), ``bf16`` or ``auto`` (bf16 where the hardware runs it
        faster, see ``discotok.nn.precision``): the encoder runs under bf16 autocast; ``int8`` (CPU): the
        encoder's linear layers run as dynamic int8 (``discotok.nn.int8``). The quantizer's projection and
        nearest-code search stay in float32.
        """
        if self.quantizer.continuous:
            self.quantizer.check_ids(None)  # a continuous quantizer refuses with a message saying what to do
        if depth is not None:
            quantizer_kwargs["depth"] = self.quantizer.check_depth(depth)
        with eval_mode(self), precision_context(precision, x.device) as resolved:
            enc = self._encoder_output(x, lengths, num_tokens, self._networks(resolved)[0])
            ids = self.quantizer(enc.z, **quantizer_kwargs).ids
        return (ids, enc.layout) if return_layout else ids

    @torch.no_grad()
    def encode_latents(
        self, x: Tensor, lengths: Tensor | None = None, *, num_tokens: int | None = None, precision: str = "fp32"
    ) -> Tensor:
        """Inputs -> the encoder's continuous latents z (B, N, D), the quantizer's input (as ``encode`` takes them),
        float32 under bf16 ``precision``."""
        with eval_mode(self), precision_context(precision, x.device) as resolved:
            return undo_autocast(self._encoder_output(x, lengths, num_tokens, self._networks(resolved)[0]).z)

    def _encoder_output(self, x: Tensor, lengths: Tensor | None, num_tokens: int | None,
                        encoder: Encoder) -> EncoderOutput:
        batch = self.modality.prepare(x, lengths)
        if num_tokens is not None:
            n = self.encoder.sequence_length
            if n is None:
                raise ValueError(
                    f"num_tokens selects a prefix of a 1-D (sequence) tokenizer; encoder "
                    f"{self.config['encoder']['name']!r} has no prefix of tokens"
                )
            if not 1 <= int(num_tokens) <= n:
                raise ValueError(f"num_tokens must lie in 1..{n}, got {num_tokens}")
        check_finite(batch.x, "the input")
        return encoder(batch.x, lengths=batch.lengths, num_tokens=num_tokens)

    @torch.no_grad()
    def decode(
        self,
        ids: Tensor,
        layout: Layout | None = None,
        size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
        *,
        timesteps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        noise: Tensor | None = None,
        condition: Tensor | None = None,
        precision: str = "fp32",
    ) -> Tensor:
        """Ids -> images or waveforms in [-1, 1] (float32 under bf16); ids are checked against the codebook first.

        For a sequence layout of N tokens, ids may hold any prefix of 1..N tokens.
        ``size``: images (H, W), the output size of decoders of 1-D sequences (grid decoders follow
        their grid); audio (T,), the samples to cut the output to.
        Generative decoders (``flow``) sample: ``timesteps`` Euler steps, classifier-free
        ``guidance_scale`` and ``seed`` (unset: the decoder's defaults); the same seed gives the
        same images; ``noise`` (as the decoder's ``forward`` documents) replaces the seeded starting noise.
        Deterministic decoders refuse these arguments.
        ``condition`` (B, L, E): the features a conditioned decoder (``Decoder.conditioned``) needs, e.g. TA-TiTok's
        text guidance, a CLIP text encoder's per-token output; every other decoder refuses it.
        Audio: ids (B, N[, depth]) -> (B, C, N * hop); ``lengths`` (B,) valid samples per item
        (as given to ``encode``) zero each item past its length and past its frames' samples
        (``num_frames(length) * hop``: X-Codec's can be fewer than the length), and padded frames never
        reach an item's valid samples (exactly so for the ``audio`` decoder).
        ``precision``: ``fp32`` (default), ``bf16`` or ``auto``: the decoder runs under bf16 autocast; ``int8``
        (CPU): its linear layers run as dynamic int8.
        """
        self.quantizer.check_ids(ids)
        device = next(self.parameters()).device
        layout, batch = self.modality.prepare_ids(ids, layout, size, lengths)
        if batch is not None and batch.lengths is not None:
            batch.lengths, batch.frames = batch.lengths.to(device), batch.frames.to(device)
        with eval_mode(self), precision_context(precision, device) as resolved:
            z_q = self.quantizer.ids_to_codes(ids.to(device))
            size, frames = (None, None) if batch is None else (batch.size, batch.frames)
            x_hat = self._decode(z_q, layout, size, frames, decoder=self._networks(resolved)[1], timesteps=timesteps,
                                 guidance_scale=guidance_scale, seed=seed, noise=noise, condition=condition)
            if batch is not None:
                x_hat = self.modality.finish(x_hat, batch)
            return undo_autocast(x_hat).clamp(-1, 1)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``path``; files appear complete or not at all."""
        return save_directory(self, self.config, path)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", revision: str | None = None
    ) -> "Tokenizer":
        """Load a tokenizer directory written by ``save_pretrained`` (in eval mode), or a Hugging Face Hub name
        ``org/name`` (ours, or a publisher's checkpoint converted once and cached; ``revision`` pins it; see
        ``discotok.tokenizers.hub``); strict, and every failure is a ``TokenizerLoadError`` naming the file."""
        return load_directory(cls.from_config, resolve(path, revision), device)

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None,
                    commit_message: str = "discotok tokenizer") -> str:
        """Upload ``config.json`` and ``model.safetensors`` to the hub repository ``repo_id`` (created if
        needed) through ``huggingface_hub``; returns the commit's URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="discotok-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "tokenizer")
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
        return str(getattr(info, "commit_url", info))
