"""``ibq``: IBQ's image tokenizers (Index Backpropagation Quantization; TencentARC/SEED-Voken, ``src/IBQ``).

SOURCE is the Lightning checkpoint the publisher distributes (``imagenet256_16384.ckpt``, ``imagenet256_262144.ckpt``,
``imagenet256_8192.ckpt``, ``imagenet256_1024.ckpt``, ``IBQ_pretrain_16384.ckpt``, ``IBQ_pretrain_262144.ckpt``):
``{"state_dict": ...}`` (or the bare state dict), read with ``weights_only=True``. IBQ is VQGAN's architecture
(taming-transformers' encoder and decoder, attention at the lowest resolution, 1x1 convolutions around the
codebook) with taming-transformers' module names: renamed to LlamaGen's, it is read as ``llamagen`` is (the
``taming`` encoder and decoder, architecture from the tensors), with IBQ's quantizer: a ``vq`` that picks the
code of highest inner product with the raw latent (``dot_product``; IBQ takes the argmax of a softmax over
``z·e``) and returns that code, with the 1x1 convolutions as its projections (``projections``, as the
published widths are equal, 256 and 256). Image size 256, as published.

Weights as for ``open_magvit2`` (``discotok.convert.lit_ema``): the EMA copy when the file holds one (the
publisher's evaluation uses it), the loss and EMA's bookkeeping ignored by name and counted in the config's
``metadata``. Fine-tuning a converted IBQ trains it as a plain ``vq`` (straight-through, commitment and codebook
losses): IBQ's index backpropagation (the gradient through the softmax over all codes) and its entropy loss
are not reproduced.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter
from discotok.convert.lit_ema import lightning_state, select_weights
from discotok.convert.llamagen import from_taming_names, read_llamagen
from discotok.registry import CONVERTERS
from discotok.tokenizers.tokenizer import Tokenizer

MODEL = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")


@CONVERTERS.register("ibq")
class IBQConverter(Converter):
    """IBQ image tokenizer checkpoints (Lightning ``.ckpt`` with a ``state_dict``)."""

    source_patterns = ("imagenet256_*.ckpt", "IBQ_pretrain_*.ckpt")
    describe = "an IBQ checkpoint (a Lightning .ckpt with a 'state_dict')"

    def read(self, source: Path) -> Tokenizer:
        return read_ibq(lightning_state(source, self.describe), source)


def read_ibq(state: dict[str, Tensor], source: Path, ema: bool = True) -> Tokenizer:
    """The tokenizer of an IBQ state dict (``ema=False``: the training weights even if an EMA copy is there)."""
    try:
        if "quantize.embedding.weight" not in state or "encoder.down.0.block.0.conv1.weight" not in state:
            raise ConvertError("not an IBQ state dict: no tensor quantize.embedding.weight or "
                               "encoder.down.0.block.0.conv1.weight")
        model, used = select_weights(state, MODEL, ema)
        renamed = from_taming_names(model)
    except ConvertError as err:
        raise ConvertError(f"{source}: {err}") from None
    return read_llamagen(renamed, source, metadata={**used, "converted_from": "ibq"}, l2_norm=False,
                         dot_product=True)
