"""Publishers' checkpoints -> discotok tokenizers: ``discotok.convert(format, source, output)``.

One file per format, each a registered ``Converter`` (``discotok.convert.base``): ``dac``, ``encodec``,
``transformers`` (EnCodec, DAC, Mimi, X-Codec and the VQ-VAEs of Janus, Emu3 and Chameleon in the Hugging Face
transformers layout), ``mimi`` (moshi's own Mimi file), ``snac`` (SNAC's hub directories), ``llamagen``
(LlamaGen's VQ), ``open_magvit2`` (Open-MAGVIT2's LFQ image tokenizers), ``ibq`` (IBQ's VQ image tokenizers),
``titok`` (bytedance/1d-tokenizer's TiTok hub directories), ``flextok`` (apple/ml-flextok's safetensors,
their Hydra config read as data), ``cosmos`` (NVIDIA
Cosmos-Tokenizer's discrete image tokenizers, read from their TorchScript files as data), ``wavtokenizer``
(WavTokenizer's Lightning checkpoints).
This package is itself callable, ``discotok.convert(...)`` being ``discotok.convert.convert(...)``
whether or not the package was imported first (importing it makes ``discotok.convert`` the module).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

from discotok.convert import (  # noqa: F401
    chameleon, cosmos, dac, encodec, flextok, hf_transformers, ibq, llamagen, moshi, open_magvit2, snac, titok,
    wavtokenizer,
)
from discotok.convert.base import ConvertError, Converter
from discotok.registry import CONVERTERS, ConfigError
from discotok.tokenizers.files import TokenizerLoadError
from discotok.tokenizers.hub import is_hub_name, publisher_checkpoint, snapshot
from discotok.tokenizers.tokenizer import Tokenizer

__all__ = ["CONVERTERS", "ConvertError", "Converter", "convert"]


def convert(format: str, source: str | os.PathLike, output: str | os.PathLike | None = None) -> Tokenizer:
    """Read ``source`` (the file a publisher distributes, or a hub name ``org/name`` whose repository holds it)
    as ``format`` and return it as a discotok tokenizer, also written to ``output`` (``config.json`` +
    ``model.safetensors``) when given."""
    try:
        converter = CONVERTERS.get(format)()
    except ConfigError:
        raise ConvertError(f"unknown format {format!r}; formats: {', '.join(CONVERTERS.names())}") from None
    path = Path(source).expanduser()
    if is_hub_name(source):
        try:
            found, path = publisher_checkpoint(snapshot(str(source)))
        except TokenizerLoadError as err:
            raise ConvertError(str(err)) from None
        if found != format:
            raise ConvertError(f"{source} holds a {found} checkpoint ({path.name}); FORMAT {format} was asked for")
    tok = converter.read(path)
    if output is not None:
        tok.save_pretrained(output)
    return tok


class _CallableModule(types.ModuleType):
    """This package, callable as ``convert``."""

    def __call__(self, format: str, source: str | os.PathLike, output: str | os.PathLike | None = None) -> Tokenizer:
        return convert(format, source, output)


sys.modules[__name__].__class__ = _CallableModule
