"""The modality contract: everything that differs between images, audio (and, later, video).

A tokenizer's ``modality`` (``Tokenizer.modality``) is one of these objects, built from the
tokenizer config by registered name (``"image"``, ``"audio"``) and bound to the tokenizer's
encoder and quantizer. The tokenizer, training, extraction, evaluation and benchmarks ask it
for what is specific to the signal and never branch on its name:

* the tokenizer: the config keys it owns, batch checks and padding (``prepare``), cutting
  and masking of outputs (``finish``), the layout of ids that come without one;
* rates and figures: bits per item or per second, timing figures, summary keys;
* training: per-item validation scores, classical baselines of the same inputs, validation
  examples written to the run folder and logged;
* extraction and decoding: the reader of its input files, the writer of decoded items,
  what a manifest records, the checks of ids read back;
* evaluation and benchmarks: metric pieces, the written protocol, classical codecs,
  example files, axes of the rate-distortion plot, benchmark inputs and tables.

Pieces that live in heavier packages (evaluation metrics, readers, codecs) are imported
inside the methods that use them, so that ``import discotok`` and building a tokenizer stay
light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from discotok.layout import Layout
from discotok.registry import ConfigError

if TYPE_CHECKING:
    from discotok.decoders.base import Decoder
    from discotok.encoders.base import Encoder
    from discotok.quantizers.base import Quantizer


@dataclass
class Batch:
    """A checked batch of inputs, ready for the encoder, and what the output must match.

    x:       the encoder's input (audio: zero-padded to whole hops).
    lengths: valid samples per item (B,) of a zero-padded audio batch, for the encoder; else None.
    frames:  valid token positions per item (B,), for the decoder and codebook statistics; else None.
    size:    the input's size past the batch and channel dimensions: (H, W) or (T,).
    """

    x: Tensor
    lengths: Tensor | None
    frames: Tensor | None
    size: tuple[int, ...]


@dataclass(frozen=True)
class RateAxes:
    """How a rate-distortion plot of this modality is drawn: the rate key and label, the quality panels."""

    rate: str
    label: str
    panels: tuple[tuple[str, str], ...]


class Modality:
    """Base class of the modality objects (see the module docstring)."""

    name: ClassVar[str]
    config_keys: ClassVar[tuple[str, ...]] = ()
    item_noun: ClassVar[str]
    items_noun: ClassVar[str]
    pixels: ClassVar[bool] = False
    depth_ladder: ClassVar[bool] = False
    waveform: ClassVar[bool] = False
    num_examples: ClassVar[int] = 8
    quality_key: ClassVar[str]
    headline: ClassVar[str]
    rate_axes: ClassVar[RateAxes]
    folder_data: ClassVar[str]

    def __init__(self, config: dict, encoder: "Encoder", quantizer: "Quantizer", decoder: "Decoder") -> None:
        self.config = config
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder

    @classmethod
    def validate_config(cls, config: dict) -> None:
        """``ConfigError`` unless the modality's own keys of a tokenizer config hold sensible values."""

    @classmethod
    def file_extensions(cls) -> tuple[str, ...]:
        """Suffixes (lower case, with the dot) of this modality's input files."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- the tokenizer -------------------------------------------------------------------------

    def prepare(self, x: Tensor, lengths: Tensor | None = None) -> Batch:
        """Check an input batch and make it ready for the encoder."""
        raise NotImplementedError

    def finish(self, x_hat: Tensor, batch: Batch) -> Tensor:
        """The decoder's output made to match the batch it came from."""
        return x_hat

    def prepare_ids(
        self, ids: Tensor, layout: Layout | None, size: Sequence[int] | None, lengths: Tensor | None
    ) -> tuple[Layout, Batch | None]:
        """The layout of ids to decode and, where the output must be cut or masked, the batch it follows."""
        raise NotImplementedError

    def default_layout(self, num_tokens: int | None = None) -> Layout:
        """The layout of ids of ``num_tokens`` tokens given without one."""
        raise NotImplementedError

    def valid_frames(self, lengths: Tensor | None) -> Tensor | None:
        """Valid token positions per item of a padded batch with ``lengths``; None when every position counts."""
        return None

    # -- rates and figures ---------------------------------------------------------------------

    def bits_per_token(self, depth: int | None = None) -> float:
        """Bits of one token position with ``depth`` levels of a residual quantizer (None: all)."""
        return self.quantizer.bits_per_token / self.quantizer.columns() * self.quantizer.columns(depth)

    def depth_for_bandwidth(self, kbps: float) -> int:
        """The residual depth of a bit rate in kbps (audio); other modalities refuse."""
        raise ValueError(f"a bandwidth in kbps applies to audio tokenizers; this is an {self.name} tokenizer")

    def rate_figures(self, ids_shape: Sequence[int], size: Sequence[int]) -> dict[str, Any]:
        """Tokens and bit rates of one item's ids of shape (N[, depth]) for an input of ``size``."""
        raise NotImplementedError

    def timing_figures(self, items: int, samples: int, encode_s: float, decode_s: float | None) -> dict[str, float]:
        """Encode and decode speed over ``items`` inputs (``samples``: their total length along time; ``decode_s``
        None: an encode-only tokenizer, no decode figures)."""
        raise NotImplementedError

    def quality_summary(self, metric: Any) -> dict[str, Any]:
        """The end-of-training quality keys (``metric(name, digits)`` reads ``val/<name>``)."""
        raise NotImplementedError

    def rate_summary(self, continuous: bool) -> dict[str, Any]:
        """The end-of-training rate keys (token count and size only for a continuous tokenizer)."""
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------

    def scores(self, x_hat: Tensor, x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
        """Per-item validation quality of reconstructions ``x_hat`` of ``x``."""
        raise NotImplementedError

    def baseline_scores(self, x: Tensor) -> dict[str, Tensor]:
        """Per-item validation quality of classical baselines of the same inputs (none by default)."""
        return {}

    def examples_path(self, out_dir: Path) -> tuple[str, Path]:
        """The summary key and path of the validation examples a run writes."""
        raise NotImplementedError

    def write_examples(
        self, out_dir: Path, x: Tensor, x_hat: Tensor, lengths: Tensor | None, loggers: Sequence[Any], step: int
    ) -> None:
        """Write the validation examples under ``out_dir`` and log them to ``loggers``."""
        raise NotImplementedError

    # -- extraction and decoding ---------------------------------------------------------------

    def reader(self, image_size: Any = None, max_seconds: float | None = None, max_duration: float | None = None,
               max_pixels: int | None = None) -> Any:
        """The reader of this modality's input files (``discotok.extraction.sources.Reader``)."""
        raise NotImplementedError

    def writer(self) -> Any:
        """The writer of decoded items (``write(path, item)``, ``suffix``)."""
        raise NotImplementedError

    def manifest_header(self, options: dict) -> dict[str, Any]:
        """What an ids manifest records about the token rate (``options``: the encode options)."""
        return {}

    def format_fields(self) -> dict[str, Any]:
        """Fields a manifest may record that ids must agree with to decode through this tokenizer."""
        return {}

    def encode_items(self, tokenizer: Any, x: Tensor, lengths: Tensor | None = None,
                     **options: Any) -> tuple[list[Tensor], Layout | None, list[dict] | None]:
        """The ids of a batch as ``discotok encode`` stores them (``options``: ``Tokenizer.encode``'s): one tensor
        per item, the layout they share (None: each item has its own ``frames``), and per item what the manifest
        records beside its ids (None: nothing)."""
        ids, layout = tokenizer.encode(x, lengths, return_layout=True, **options)
        return list(ids), layout, None

    def batch_decoder(self, tokenizer: Any, loaded: Any, batch_size: int, sampler: dict) -> Any:
        """Check every id read back, then return the decoder of batch i to a list of items."""
        raise NotImplementedError

    # -- evaluation and benchmarks -------------------------------------------------------------

    def eval_reader(self, peers: Sequence["Modality"], image_size: Any = None, max_seconds: float | None = None) -> Any:
        """The reader of an evaluation set shared by ``peers`` (every tokenizer evaluated together, this one first):
        the reference format they are all scored in (``discotok.eval.formats``)."""
        raise NotImplementedError

    def eval_format(self, reader: Any) -> Any:
        """How this tokenizer codes the batches of ``reader``'s reference format (``discotok.eval.formats``)."""
        raise NotImplementedError

    def eval_protocol(self, reader: Any, data: Any, options: Any, device: Any) -> tuple[dict, dict]:
        """The protocol written into every report, and the networks its metrics need."""
        raise NotImplementedError

    def eval_metrics(self, reader: Any, options: Any, nets: dict) -> tuple[list, Any]:
        """Metric pieces of one operating point on ``reader``'s reference format (None: the tokenizer's own; the
        first is the headline quality), and pFID's or None."""
        raise NotImplementedError

    def eval_baselines(self, data: Any, results: list[dict], options: Any, nets: dict) -> dict[str, Any]:
        """Classical codecs at the tokenizers' rates, scored as the tokenizers are."""
        raise NotImplementedError

    def save_eval_examples(self, reader: Any, rows: list, labels: list[str], out_dir: Path, name: str) -> tuple[str, str]:
        """Write one tokenizer's example reconstructions in ``reader``'s reference format; the report's file key and
        file name."""
        raise NotImplementedError

    def bench_input(self, batch_size: int, seconds: float) -> tuple[Tensor, dict]:
        """The benchmark batch and its rate figures."""
        raise NotImplementedError

    def bench_figures(self, x: Tensor, ms: dict[str, float]) -> dict[str, float]:
        """Benchmark figures of the batch ``x`` from median milliseconds (``encode_ms``, ``decode_ms`` and, when the
        training step was timed, ``train_step_ms`` and ``peak_gb``)."""
        raise NotImplementedError

    @staticmethod
    def bench_table(rows: Sequence[dict]) -> str:
        """A markdown table of benchmark rows of this modality."""
        raise NotImplementedError


def positive_int(config: dict, key: str, what: str) -> int:
    """``config[key]`` as a positive int, or ``ConfigError`` saying that ``what`` needs one."""
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"config: {what} needs a positive integer '{key}', got {value!r}")
    return value
