"""The assembled ``Tokenizer``, its config and its file format."""

from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.files import TokenizerLoadError
from discotok.tokenizers.tokenizer import Tokenizer, TokenizerOutput

__all__ = ["Tokenizer", "TokenizerLoadError", "TokenizerOutput", "tokenizer_config"]
