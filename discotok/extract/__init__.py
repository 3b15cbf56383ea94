"""Token extraction at scale: ``discotok.extract(tokenizer, source, output_dir, ...)``.

The package is callable: ``discotok.extract(...)`` is ``discotok.extract.extract(...)``, so a
notebook needs no second import, while ``discotok.extract.decode_ids`` and the submodules
stay reachable. Submodules: ``sources`` (inputs and per-modality readers), ``shards``
(resumable sharded output), ``encode`` (the function), ``distributed`` (Lightning, several
devices), ``decode`` (ids -> files), ``cli`` (``discotok encode | decode``).
"""

import sys
import types

from discotok.extract.cli import decode_main, encode_main
from discotok.extract.decode import decode_ids
from discotok.extract.encode import ExtractReport, extract
from discotok.io import ExtractError

__all__ = ["ExtractError", "ExtractReport", "decode_ids", "decode_main", "encode_main", "extract"]


class _CallableModule(types.ModuleType):
    """The module type of ``discotok.extract``: calling it calls ``extract``."""

    def __call__(self, *args, **kwargs) -> ExtractReport:
        return extract(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
