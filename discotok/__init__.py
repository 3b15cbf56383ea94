"""discotok: discrete tokenizers of images and audio.

The public names are imported on first use (PEP 562), so ``import discotok`` and the
``discotok`` command start at once; components register themselves when their registry
is first asked for a name (``discotok.registry``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

PUBLIC = {
    "ConfigError": "discotok.registry",
    "Layout": "discotok.layout",
    "QuantizerOutput": "discotok.quantizers",
    "Tokenizer": "discotok.tokenizers",
    "TokenizerLoadError": "discotok.tokenizers",
    "extract": "discotok.extraction",
    "convert": "discotok.convert",
}
__all__ = [*PUBLIC, "__version__"]


def __getattr__(name: str) -> object:
    """Import a public name (``discotok.Tokenizer``, ``discotok.extract`` ...) when first asked for."""
    if name in PUBLIC:
        value = getattr(importlib.import_module(PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'discotok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])
