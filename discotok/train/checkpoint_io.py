"""Checkpoints written beside their final name and renamed, so a kill never leaves a partial file.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: the bytes go to a
temporary file in ``$TMPDIR`` and are moved into place at the end. Where ``$TMPDIR`` is another
filesystem (often tmpfs) the move is a copy, and a kill during that copy leaves ``last.ckpt``
empty or truncated. ``AtomicCheckpointIO`` writes local checkpoints to a temporary name in the
checkpoint's own folder, flushes them to disk and renames them (``os.replace``, atomic on one
filesystem); remote paths (``s3://...``) keep Lightning's writer.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from discotok.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves appear complete or not at all (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path``: a temporary file beside it, fsynced, then renamed onto it."""
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(os.fspath(path)) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
