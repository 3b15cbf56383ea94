"""Token extraction at scale: ``discotok.extract(tokenizer, source, output_dir, ...)``.

``discotok.extract`` is ``discotok.extraction.extract``. Submodules: ``sources`` (inputs and
per-modality readers), ``shards`` (resumable sharded output), ``encode`` (the function),
``distributed`` (Lightning, several devices), ``decode`` (ids -> files). The commands
``discotok encode | decode`` live in ``discotok.commands.extract``.
"""

from discotok.extraction.decode import decode_ids
from discotok.extraction.encode import ExtractReport, extract
from discotok.io import ExtractError

__all__ = ["ExtractError", "ExtractReport", "decode_ids", "extract"]

