"""Publishers' checkpoints -> discotok tokenizers: ``discotok.convert(format, source, output)``.

One file per format, each a registered ``Converter`` (``discotok.convert.base``): ``dac``, ``encodec``.
"""

from __future__ import annotations

import os
from pathlib import Path

from discotok.convert import dac, encodec  # noqa: F401
from discotok.convert.base import ConvertError, Converter
from discotok.registry import CONVERTERS, ConfigError
from discotok.tokenizers.tokenizer import Tokenizer

__all__ = ["CONVERTERS", "ConvertError", "Converter", "convert"]


def convert(format: str, source: str | os.PathLike, output: str | os.PathLike | None = None) -> Tokenizer:
    """Read ``source`` (the file a publisher distributes) as ``format`` and return it as a discotok tokenizer,
    also written to ``output`` (``config.json`` + ``model.safetensors``) when given."""
    try:
        converter = CONVERTERS.get(format)()
    except ConfigError:
        raise ConvertError(f"unknown format {format!r}; formats: {', '.join(CONVERTERS.names())}") from None
    tok = converter.read(Path(source).expanduser())
    if output is not None:
        tok.save_pretrained(output)
    return tok
