"""``audio``: waveforms (B, C, T) in [-1, 1] at the tokenizer's sample rate; one token position per hop.

A batch is zero-padded to whole hops (or the encoder's ``length_multiple``); with ``lengths`` (B,) valid
samples per item, each item encodes as it would alone over its ``num_frames(length)`` valid frames, and
decoded items are zero past their lengths.

A config may add ``segments`` (``discotok.modalities.audio_segments``): then files are coded as EnCodec 48 kHz
codes them, in segments each with a loudness scale; ``encode_items`` and ``batch_decoder`` (``discotok encode`` /
``decode``) do so and keep the scales beside the ids, while ``Tokenizer.encode`` / ``decode`` stay the network on
the waveform they are given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from discotok.decoders.base import WaveformDecoder
from discotok.encoders.base import WaveformEncoder
from discotok.layout import Layout
from discotok.figures import rounded
from discotok.markdown import markdown_table
from discotok.modalities.audio_segments import ClipCodes, Segmenting, decode_clips, encode_clips
from discotok.modalities.base import Batch, Modality, RateAxes, positive_int
from discotok.nn.modes import eval_mode
from discotok.nn.waveform import check_audio_batch, check_lengths, mask_past
from discotok.registry import MODALITIES, ConfigError


class EncodeStream:
    """Waveform chunks (B, C, m) in, as they come; the ids (B, n, depth) of the frames they complete out.

    The concatenation of every ``push`` and the final ``flush`` equals the offline ``encode`` of the whole
    waveform, whatever the chunk sizes (see ``AudioModality.encode_stream``).
    """

    def __init__(self, modality: "AudioModality", depth: int | None) -> None:
        self.modality = modality
        self.kwargs = {} if depth is None else {"depth": modality.quantizer.check_depth(depth)}
        self.stream = modality.encoder.stream()

    def _ids(self, z: Tensor) -> Tensor:
        quantizer = self.modality.quantizer
        if z.shape[-1] == 0:
            levels = (quantizer.columns(self.kwargs.get("depth")),) if quantizer.depth else ()
            return torch.zeros(z.shape[0], 0, *levels, dtype=torch.long, device=z.device)
        return quantizer(rearrange(z, "b d n -> b n d"), **self.kwargs).ids

    @torch.no_grad()
    def push(self, x: Tensor) -> Tensor:
        check_audio_batch(x, self.modality.channels)
        with eval_mode(self.modality.encoder), eval_mode(self.modality.quantizer):
            return self._ids(self.stream.push(x))

    @torch.no_grad()
    def flush(self) -> Tensor:
        with eval_mode(self.modality.encoder), eval_mode(self.modality.quantizer):
            return self._ids(self.stream.flush())


class DecodeStream:
    """Ids (B, n[, depth]) in, chunk by chunk; their samples (B, C, n * hop) out, equal to the offline decode."""

    def __init__(self, modality: "AudioModality") -> None:
        self.modality = modality
        self.stream = modality.decoder.stream()

    @torch.no_grad()
    def push(self, ids: Tensor) -> Tensor:
        self.modality.quantizer.check_ids(ids)
        with eval_mode(self.modality.decoder), eval_mode(self.modality.quantizer):
            z = self.modality.quantizer.ids_to_codes(ids)
            return self.stream.push(rearrange(z, "b n d -> b d n")).clamp(-1, 1)

    @torch.no_grad()
    def flush(self) -> Tensor:
        with eval_mode(self.modality.decoder):
            return self.stream.flush().clamp(-1, 1)


@MODALITIES.register("audio")
class AudioModality(Modality):
    """Waveforms at ``sample_rate`` with ``channels`` channels, ``hop_length`` samples per frame."""

    name = "audio"
    config_keys = ("sample_rate", "channels", "segments")
    item_noun, items_noun = "clip", "clips"
    depth_ladder = True
    waveform = True
    num_examples = 4
    quality_key, headline = "val_si_snr_db", "si_snr"
    rate_axes = RateAxes("bits_per_second", "bits per second", (
        ("si_snr", "SI-SNR (dB)"), ("mel_distance", "mel distance"), ("stft_distance", "STFT distance"),
        ("pesq", "PESQ"), ("stoi", "STOI")))

    folder_data = "audio_folder"

    @classmethod
    def file_extensions(cls) -> tuple[str, ...]:
        from discotok.data.audio import AUDIO_EXTENSIONS

        return AUDIO_EXTENSIONS

    def __init__(self, config: dict, encoder: Any, quantizer: Any, decoder: Any) -> None:
        super().__init__(config, encoder, quantizer, decoder)
        if not isinstance(encoder, WaveformEncoder):
            raise ConfigError(f"config: encoder {type(encoder).__name__} is not a waveform encoder")
        if not isinstance(decoder, WaveformDecoder):
            raise ConfigError(f"config: decoder {type(decoder).__name__} is not a waveform decoder")
        if encoder.in_channels != self.channels or decoder.out_channels != self.channels:
            raise ConfigError(
                f"config: channels is {self.channels} but the encoder takes {encoder.in_channels} and "
                f"the decoder gives {decoder.out_channels}"
            )
        if decoder.hop_length != encoder.hop_length:
            raise ConfigError(
                f"config: the decoder's hop_length {decoder.hop_length} differs from the encoder's {encoder.hop_length}"
            )

    @classmethod
    def validate_config(cls, config: dict) -> None:
        for key in ("sample_rate", "channels"):
            positive_int(config, key, "an audio tokenizer")
        if "segments" in config:
            Segmenting.from_config(config["segments"])

    @property
    def segmenting(self) -> Segmenting | None:
        """How files are cut into segments with loudness scales (the config's ``segments``), or None: whole clips."""
        return Segmenting.from_config(self.config["segments"]) if "segments" in self.config else None

    @property
    def sample_rate(self) -> int:
        """Samples per second of the waveforms the tokenizer takes and returns."""
        return int(self.config["sample_rate"])

    @property
    def channels(self) -> int:
        """Channels of the waveforms (1 mono, 2 stereo)."""
        return int(self.config["channels"])

    @property
    def hop_length(self) -> int:
        """Samples per frame (token position)."""
        return self.encoder.hop_length

    @property
    def frames_per_second(self) -> float:
        """Token positions per second of audio."""
        return self.sample_rate / self.hop_length

    @property
    def length_multiple(self) -> int:
        """Samples input lengths are zero-padded to a multiple of: the hop, or the encoder's larger multiple of it
        (SNAC with attention: whole windows)."""
        return self.encoder.length_multiple

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames (token positions) that ``num_samples`` samples encode to (int or tensor): the encoder's rule,
        ceil(num_samples / hop) rounded up to whole ``length_multiple`` for most; X-Codec's is transformers'
        floor((num_samples - 80) / 320) + 1."""
        return self.encoder.num_frames(num_samples)

    def bits_per_second(self, depth: int | None = None) -> float:
        """The bit rate of ids at ``depth`` levels of a residual quantizer (None: all)."""
        return self.frames_per_second * self.bits_per_token(depth)

    def depth_for_bandwidth(self, kbps: float) -> int:
        """The depth whose bit rate is ``kbps`` kilobits per second (EnCodec's bandwidths: 1.5 / 3 / 6 / 12 / 24 at
        24 kHz are depths 2 / 4 / 8 / 16 / 32); ``ValueError`` listing the rates this codec offers otherwise."""
        for depth, rate in self.bit_rates.items():
            if abs(rate - 1e3 * kbps) <= 1e-6 * rate:
                return depth
        offered = ", ".join(f"{rate / 1e3:g}" for rate in self.bit_rates.values())
        raise ValueError(f"bandwidth {kbps:g} kbps is not one of this codec's: {offered} kbps")

    @property
    def bit_rates(self) -> dict[int, float]:
        """Bits per second at each depth 1..depth (a single-level quantizer: ``{1: rate}``)."""
        if not self.quantizer.depth:
            return {1: self.bits_per_second()}
        return {k: self.bits_per_second(k) for k in range(1, self.quantizer.depth + 1)}

    def encode_stream(self, depth: int | None = None) -> EncodeStream:
        """Streaming encode for causal codecs: ``push(chunk)`` returns the ids of the frames the samples so far
        complete, ``flush()`` the rest at the end; together they equal the offline ids. The algorithmic latency
        is one hop (a frame comes once its hop is in); a reflect-padded encoder (EnCodec) also waits, at the
        start only, for its first layers' padding."""
        return EncodeStream(self, depth)

    def decode_stream(self) -> DecodeStream:
        """Streaming decode for causal codecs: ``push(ids)`` returns the samples of those frames (the offline
        decode's, one hop per frame, no lookahead), ``flush()`` what a reflect-padded decoder still holds."""
        return DecodeStream(self)

    def prepare(self, x: Tensor, lengths: Tensor | None = None) -> Batch:
        """Check a waveform batch and zero-pad it to whole hops (``length_multiple``); lengths and valid frames per
        item."""
        check_audio_batch(x, self.channels)
        total = x.shape[-1]
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], total).to(x.device)
        padded = F.pad(x, (0, -total % self.length_multiple))
        if lengths is None and padded.shape[-1] != total:  # the encoder tells the padding from the signal
            lengths = torch.full((x.shape[0],), total, device=x.device)
        return Batch(padded, lengths, self.valid_frames(lengths), (total,))

    def finish(self, x_hat: Tensor, batch: Batch) -> Tensor:
        """Cut (or zero-extend) to the input's T samples and zero each item past its length and past its frames'
        samples (``frames * hop``, fewer than its length for X-Codec's last partial hop)."""
        total = batch.size[-1]
        x_hat = F.pad(x_hat[..., :total], (0, max(0, total - x_hat.shape[-1])))
        if batch.lengths is None:
            return x_hat
        return mask_past(x_hat, torch.minimum(batch.lengths, batch.frames * self.hop_length))

    def prepare_ids(
        self, ids: Tensor, layout: Layout | None, size: Sequence[int] | None, lengths: Tensor | None
    ) -> tuple[Layout, Batch | None]:
        n = ids.shape[1]
        layout = layout or self.default_layout(n)
        if layout != Layout("frames", (n,)):
            raise ValueError(f"audio ids of {n} frames need the layout Layout('frames', ({n},)), got {layout}")
        total = n * self.hop_length if size is None else int(size[-1])
        if lengths is not None:
            lengths = check_lengths(lengths, ids.shape[0], self.encoder.max_samples(n))
        return layout, Batch(None, lengths, self.valid_frames(lengths), (total,))

    def default_layout(self, num_tokens: int | None = None) -> Layout:
        if num_tokens is None:
            raise ValueError("an audio tokenizer's layout follows the ids: Layout('frames', (N,))")
        return Layout("frames", (int(num_tokens),))

    def valid_frames(self, lengths: Tensor | None) -> Tensor | None:
        return None if lengths is None else self.num_frames(lengths)

    def segment_frames(self, samples: int) -> list[int]:
        """Frames of each segment of a clip of ``samples`` samples (the config's ``segments``; one segment without)."""
        segmenting = self.segmenting or Segmenting(seconds=None)
        return [self.num_frames(stop - start) for start, stop in segmenting.spans(samples, self.sample_rate)]

    def stored_frames(self, samples: Tensor) -> Tensor:
        """Frames of ids ``discotok encode`` stores for items of ``samples`` (B,) samples: ``num_frames`` of each,
        or with ``segments`` the sum over its segments."""
        if self.segmenting is None:
            return self.num_frames(samples)
        return torch.tensor([sum(self.segment_frames(n)) for n in samples.tolist()])

    def encode_items(self, tokenizer: Any, x: Tensor, lengths: Tensor | None = None,
                     **options: Any) -> tuple[list[Tensor], Layout | None, list[dict] | None]:
        """Each item's ids (frames[, depth]) over its valid frames, no shared layout, and per item its ``frames``;
        with ``segments``, its segments' ids one after another and their loudness ``scales`` (floats)."""
        segmenting = self.segmenting
        if segmenting is None:
            ids = tokenizer.encode(x, lengths, **options)
            frames = self.num_frames(x.shape[-1] if lengths is None else lengths)
            frames = [frames] * x.shape[0] if isinstance(frames, int) else frames.tolist()
            return [row[:n] for row, n in zip(ids, frames)], None, [{"frames": n} for n in frames]
        codes = encode_clips(tokenizer, segmenting, x, lengths, **options)
        rows = [torch.cat(item) for item in codes.ids]
        scales = codes.scales or [None] * len(rows)
        return rows, None, [{"frames": row.shape[0], **({} if s is None else {"scales": s.tolist()})}
                            for row, s in zip(rows, scales)]

    def rate_figures(self, ids_shape: Sequence[int], size: Sequence[int]) -> dict[str, Any]:
        depth = self.quantizer.depth_of(ids_shape[-1]) if len(ids_shape) == 2 else None
        return {"frames_per_second": self.frames_per_second, "depth": depth, "bits_per_second": self.bits_per_second(depth)}

    def timing_figures(self, items: int, samples: int, encode_s: float, decode_s: float | None) -> dict[str, float]:
        """Real-time factors: compute seconds per second of audio (no decode figure without ``decode_s``)."""
        seconds = samples / self.sample_rate
        decode = {} if decode_s is None else {"decode_rtf": decode_s / seconds}
        return {"seconds": seconds, "encode_rtf": encode_s / seconds, **decode}

    def quality_summary(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {"val_si_snr_db": rounded(metrics, "si_snr", 3), "val_mel_distance": rounded(metrics, "mel_distance", 4),
                "val_stft_distance": rounded(metrics, "stft_distance", 4)}

    def rate_summary(self, continuous: bool) -> dict[str, Any]:
        rate = {"sample_rate": self.sample_rate, "channels": self.channels, "hop_length": self.hop_length,
                "frames_per_second": round(self.frames_per_second, 3)}
        if continuous:
            return rate
        return rate | {"bits_per_token": round(self.bits_per_token(), 3), "bits_per_second": round(self.bits_per_second(), 1),
                       "bits_per_second_by_depth": {str(k): round(v, 1) for k, v in self.bit_rates.items()}}

    def scores(self, x_hat: Tensor, x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
        from discotok.metrics.audio import mel_distance, si_snr, stft_distance

        return {"si_snr": si_snr(x_hat, x, lengths), "mel_distance": mel_distance(x_hat, x, self.sample_rate, lengths),
                "stft_distance": stft_distance(x_hat, x, lengths)}

    def examples_path(self, out_dir: Path) -> tuple[str, Path]:
        return "examples", Path(out_dir) / "examples"

    def write_examples(
        self, out_dir: Path, x: Tensor, x_hat: Tensor, lengths: Tensor | None, loggers: Sequence[Any], step: int
    ) -> None:
        """``examples/NN_input.wav`` and ``examples/NN_reconstruction.wav``, cut to their lengths, also logged."""
        from discotok.data.audio import save_audio
        from discotok.media import log_audio

        folder = self.examples_path(out_dir)[1]
        for i, (wave_in, wave_out) in enumerate(zip(x, x_hat)):
            n = wave_in.shape[-1] if lengths is None else int(lengths[i])
            for kind, wave in (("input", wave_in[:, :n]), ("reconstruction", wave_out[:, :n])):
                save_audio(folder / f"{i:02d}_{kind}.wav", wave, self.sample_rate)
                log_audio(loggers, f"val/{i:02d}_{kind}", wave, self.sample_rate, step)

    def reader(self, image_size: Any = None, max_seconds: float | None = None, max_duration: float | None = None,
               max_pixels: int | None = None) -> Any:
        """Waveforms at the tokenizer's rate and channels, at least one hop long, the first ``max_seconds`` of
        each file (default: all of it), files longer than ``max_duration`` seconds refused."""
        from discotok.extraction.sources import AudioReader
        from discotok.io import ExtractError

        if image_size is not None:
            raise ExtractError("image_size (--image-size) applies to image tokenizers; this one is an audio tokenizer")
        if max_seconds is not None and max_seconds <= 0:
            raise ExtractError(f"max_seconds (--max-seconds) must be positive, got {max_seconds}")
        return AudioReader(self.sample_rate, self.channels, min_samples=self.hop_length, max_seconds=max_seconds,
                           max_duration=max_duration)

    def writer(self) -> Any:
        from discotok.data.audio import AudioWriter

        return AudioWriter(self.sample_rate)

    def manifest_header(self, options: dict) -> dict[str, Any]:
        return {"hop_length": self.hop_length, "frames_per_second": self.frames_per_second,
                "bits_per_second": self.bits_per_second(options.get("depth"))}

    def format_fields(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "channels": self.channels, "hop_length": self.hop_length}

    def batch_decoder(self, tokenizer: Any, loaded: Any, batch_size: int, sampler: dict) -> Any:
        """Waveforms of batch i, each cut to its samples (else its frames x hop)."""
        from discotok.extraction.checks import check_frame_ids
        from discotok.extraction.decode import batch_sampler

        ids, frames, samples = check_frame_ids(tokenizer, loaded)
        lengths = frames * self.hop_length if samples is None else samples
        if self.segmenting is not None:
            return self.segments_decoder(tokenizer, loaded, ids, frames, samples, batch_size, sampler)

        def decode_batch(i: int) -> list[Tensor]:
            start = i * batch_size
            stop = min(start + batch_size, ids.shape[0])
            width = int(frames[start:stop].max())
            waves = tokenizer.decode(ids[start:stop, :width], lengths=lengths[start:stop], **batch_sampler(sampler, i))
            return [wave[:, :n] for wave, n in zip(waves, lengths[start:stop].tolist())]

        return decode_batch

    def segments_decoder(self, tokenizer: Any, loaded: Any, ids: Tensor, frames: Tensor, samples: Tensor | None,
                         batch_size: int, sampler: dict) -> Any:
        """``batch_decoder`` of a segmenting tokenizer: each item's ids cut into its segments (from its samples),
        decoded with the scales stored beside them (``ExtractError`` naming the file when they are not there or
        do not fit), overlap-added and cut to its samples, clamped to [-1, 1]."""
        from discotok.io import ExtractError

        segmenting = self.segmenting
        source = loaded.path
        if sampler.get("precision", "fp32") != "fp32":
            raise ExtractError(f"--precision {sampler['precision']}: segmented decoding runs in fp32")
        if samples is None:
            raise ExtractError(f"{source}: this tokenizer codes files in segments with loudness scales (config "
                               "'segments'), and these ids come without their manifest: decode the output folder "
                               "of discotok encode, whose manifest.json holds each item's samples and scales")
        scales = loaded.item_values("scales")
        if segmenting.normalize and scales is None:
            raise ExtractError(f"{source}: this tokenizer divides each segment by a loudness scale (config "
                               "'segments'), and the manifest holds no 'scales' for its items: they were encoded by "
                               "a tokenizer without segments, or the scales were removed")
        counts = [self.segment_frames(n) for n in samples.tolist()]
        for row, (item, n) in enumerate(zip(counts, samples.tolist())):
            if scales is not None and (len(scales[row]) != len(item)
                                       or not all(math.isfinite(s) and s > 0 for s in scales[row])):
                raise ExtractError(f"{source}: row {row} ({n} samples, {len(item)} segments) needs {len(item)} "
                                   f"positive loudness scales, the manifest holds {scales[row]}")
        stride = segmenting.length_stride(self.sample_rate, 1)[1]

        def decode_batch(i: int) -> list[Tensor]:
            rows = range(i * batch_size, min((i + 1) * batch_size, ids.shape[0]))
            pieces = [list(ids[row, : int(frames[row])].split(counts[row])) for row in rows]
            kept = None if scales is None else [torch.tensor(scales[row], dtype=torch.float32) for row in rows]
            waves = decode_clips(tokenizer, ClipCodes(pieces, kept), stride)
            return [wave[:, : int(samples[row])].clamp(-1, 1) for wave, row in zip(waves, rows)]

        return decode_batch

    def eval_reader(self, peers: Sequence[Modality], image_size: Any = None, max_seconds: float | None = None) -> Any:
        """Clips at the highest sample rate and channel count of ``peers``, at least one hop of each long."""
        from discotok.defaults import DEFAULT_MAX_DURATION
        from discotok.extraction.sources import AudioReader

        self.reader(image_size, max_seconds)  # the options' checks
        rate, channels = max(p.sample_rate for p in peers), max(p.channels for p in peers)
        shortest = max(-(-p.hop_length * rate // p.sample_rate) for p in peers)
        return AudioReader(rate, channels, min_samples=shortest, max_seconds=max_seconds, max_duration=DEFAULT_MAX_DURATION)

    def eval_format(self, reader: Any) -> Any:
        """As read at this tokenizer's rate and channels, else resampled there and back."""
        from discotok.eval.formats import AsIs, ResampledAudio

        if (reader.sample_rate, reader.channels) == (self.sample_rate, self.channels):
            return AsIs()
        return ResampledAudio(reader.sample_rate, reader.channels, self.sample_rate, self.channels)

    def eval_protocol(self, reader: Any, data: Any, options: Any, device: Any) -> tuple[dict, dict]:
        from discotok.eval.protocol import audio_protocol

        return audio_protocol(reader, data, options), {}

    def eval_metrics(self, reader: Any, options: Any, nets: dict) -> tuple[list, Any]:
        """SI-SNR, mel and STFT distances (PESQ and STOI when asked for) at the reference sample rate."""
        from discotok.eval.metrics import audio_metrics

        return audio_metrics(self.sample_rate if reader is None else reader.sample_rate, options.pesq_stoi), None

    def eval_baselines(self, data: Any, results: list[dict], options: Any, nets: dict) -> dict[str, Any]:
        from discotok.eval.baselines.audio import audio_baselines

        return audio_baselines(data, results, options, nets)

    def save_eval_examples(self, reader: Any, rows: list, labels: list[str], out_dir: Path, name: str) -> tuple[str, str]:
        """``examples_NAME/``: ``NN_original.wav`` and one ``NN_<label>.wav`` per operating point, at the reference
        sample rate."""
        from discotok.data.audio import save_examples

        folder = Path(out_dir) / f"examples_{name}"
        return f"examples_{name}", save_examples(rows, labels, folder, reader.sample_rate).name

    def bench_input(self, batch_size: int, seconds: float) -> tuple[Tensor, dict]:
        """``batch_size`` clips of ``seconds`` of speech (espeak-ng, else synthetic)."""
        from discotok.data.speech import speech_clip

        x = speech_clip(self.sample_rate, self.channels, seconds, count=batch_size)
        return x, {"sample_rate": self.sample_rate, "seconds": seconds, "frames_per_second": self.frames_per_second,
                   "bits_per_second": self.bits_per_second()}

    def bench_figures(self, x: Tensor, ms: dict[str, float]) -> dict[str, float]:
        """Milliseconds and real-time factors (compute seconds / seconds of audio in ``x``) of encode, decode and
        a training step (when timed)."""
        seconds = x.shape[0] * x.shape[-1] / self.sample_rate
        out = {**ms, "encode_rtf": ms["encode_ms"] / 1e3 / seconds, "decode_rtf": ms["decode_ms"] / 1e3 / seconds}
        if "train_step_ms" in ms:
            out["train_rtf"] = ms["train_step_ms"] / 1e3 / seconds
        return out

    @staticmethod
    def bench_table(rows: Sequence[dict]) -> str:
        header = ["target", "device", "batch x s", "rate", "params M", "bits/s", "encode RTF", "decode RTF",
                  "train step ms", "train RTF", "train vs 1st", "peak GB"]
        return markdown_table(header, [
            [r["target"], r["device"], f"{r['batch_size']} x {r['seconds']:g}", r["sample_rate"],
             f"{r['params_m']:.2f}", f"{r['bits_per_second']:.0f}", f"{r['encode_rtf']:.4f}", f"{r['decode_rtf']:.4f}",
             f"{r['train_step_ms']:.0f}", f"{r['train_rtf']:.3f}", f"{r.get('train_vs_first', 1.0):.2f}",
             f"{r['peak_gb']:.2f} ({r['peak_memory']})"] for r in rows])
