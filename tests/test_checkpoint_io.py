"""Checkpoints are written beside their final name and renamed: a failure mid-write never leaves a
partial file under the final name (nor a temporary file behind), and the training run uses that writer."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from discotok.train.checkpoint_io import AtomicCheckpointIO


class Explodes:
    """Pickling this fails after everything before it in the checkpoint has been written."""

    def __reduce__(self):
        raise RuntimeError("killed mid-write")


def checkpoint(step: int) -> dict:
    return {"global_step": step, "state_dict": {"w": torch.randn(256, 256)}}


def test_failure_while_serialising_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(checkpoint(1), path)
    good = path.read_bytes()
    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({**checkpoint(2), "extra": [torch.randn(1024, 1024), Explodes()]}, path)
    assert path.read_bytes() == good
    assert io.load_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_failure_while_copying_across_filesystems_never_truncates(tmp_path: Path, monkeypatch) -> None:
    """A temporary file on another filesystem ($TMPDIR on tmpfs) is copied, not renamed; a kill
    during that copy must not leave a truncated file under the final name."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    real_rename = os.rename

    def cross_device_rename(src, dst, *args, **kwargs):
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    def copy_half_then_die(fsrc, fdst, length=0):
        fdst.write(fsrc.read(1000))
        raise KeyboardInterrupt("killed during the copy")

    monkeypatch.setattr(os, "rename", cross_device_rename)
    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_die)
    monkeypatch.setattr(shutil, "copyfile", lambda src, dst, **kw: copy_half_then_die(open(src, "rb"), open(dst, "wb")))
    path = tmp_path / "checkpoints" / "last.ckpt"
    try:
        AtomicCheckpointIO().save_checkpoint(checkpoint(3), path)
    except KeyboardInterrupt:
        pass
    if path.exists():
        assert AtomicCheckpointIO().load_checkpoint(path)["global_step"] == 3, "a partial checkpoint under the final name"
    assert not [p for p in path.parent.iterdir() if p.name != "last.ckpt"], "a temporary file was left behind"


