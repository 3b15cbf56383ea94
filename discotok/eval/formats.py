"""How each tokenizer of one ``discotok eval`` codes the shared evaluation set.

The set is read once, in one reference format (``Modality.eval_reader``: images at the evaluation
size; audio at the highest sample rate and channel count among the tokenizers evaluated together),
and every tokenizer is scored against those same references. ``Modality.eval_format`` says how one
tokenizer codes a reference batch:

* ``AsIs``: the batch goes in as read and the reconstruction is scored as it comes out (images: every
  tokenizer codes at the evaluation size; ``coded_at`` notes one coding at a size other than the one
  it was configured for);
* ``ResampledAudio``: a tokenizer of another sample rate or channel count codes each clip resampled
  (and mixed down to mono, or mono duplicated) into its own format; its reconstruction is converted
  back to the reference format, cut to each clip's length and scored there. Resampling is outside the
  timed encode and decode calls; real-time factors count the seconds of audio the tokenizer coded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from discotok.data.audio import convert_channels
from discotok.data.resample import output_length, resample
from discotok.nn.waveform import mask_past


@dataclass(frozen=True)
class AsIs:
    """The reference batch as the tokenizer codes it; ``coded_at`` and ``note`` (None when nothing to say)."""

    coded_at: str | None = None
    note: str | None = None

    def to_native(self, x: Tensor, extra: dict) -> tuple[Tensor, dict]:
        """The batch (and its keyword arguments) in the tokenizer's format."""
        return x, extra

    def from_native(self, x_hat: Tensor, x: Tensor, extra: dict) -> Tensor:
        """The reconstruction in the reference format of ``x``."""
        return x_hat


@dataclass(frozen=True)
class ResampledAudio:
    """Clips read at ``reference_rate`` Hz and ``reference_channels``, coded at ``rate`` Hz and ``channels``."""

    reference_rate: int
    reference_channels: int
    rate: int
    channels: int

    @property
    def coded_at(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch"

    @property
    def note(self) -> str:
        return (f"clips resampled from {self.reference_rate} Hz ({self.reference_channels} ch) to {self.rate} Hz "
                f"({self.channels} ch, mono as the channels' mean) before encoding; reconstructions resampled back, "
                f"cut to each clip's length and scored at {self.reference_rate} Hz")

    def to_native(self, x: Tensor, extra: dict) -> tuple[Tensor, dict]:
        lengths = extra["lengths"]
        native = resample(convert_channels(x, self.channels), self.reference_rate, self.rate)
        coded = torch.tensor([output_length(int(n), self.reference_rate, self.rate) for n in lengths])
        return native, {**extra, "lengths": coded.clamp(max=native.shape[-1])}

    def from_native(self, x_hat: Tensor, x: Tensor, extra: dict) -> Tensor:
        back = resample(convert_channels(x_hat.float(), self.reference_channels), self.rate, self.reference_rate)
        total = x.shape[-1]
        back = F.pad(back, (0, max(total - back.shape[-1], 0)))[..., :total]
        return mask_past(back, extra["lengths"]).clamp(-1, 1)
