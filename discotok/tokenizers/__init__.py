"""Encoders and the assembled ``Tokenizer``."""

from discotok.registry import ENCODERS
from discotok.tokenizers import audio, flexible, grid, titok, vit  # noqa: F401
from discotok.tokenizers.layout import EncoderOutput, Layout
from discotok.tokenizers.tokenizer import Tokenizer, TokenizerLoadError, TokenizerOutput, tokenizer_config

__all__ = ["ENCODERS", "EncoderOutput", "Layout", "Tokenizer", "TokenizerLoadError", "TokenizerOutput", "tokenizer_config"]
