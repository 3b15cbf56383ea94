"""discotok: discrete tokenizers of images and audio."""

from discotok import decoders, quantizers  # noqa: F401  (register components)
from discotok.extraction import extract
from discotok.quantizers import QuantizerOutput
from discotok.registry import ConfigError
from discotok.tokenizers import Layout, Tokenizer, TokenizerLoadError

__version__ = "0.1.0"
__all__ = ["ConfigError", "Layout", "extract", "QuantizerOutput", "Tokenizer", "TokenizerLoadError", "__version__"]
