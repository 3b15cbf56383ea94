"""``resume=<run dir or checkpoint>``: find the checkpoint and check it belongs to this model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from discotok.train.module import TokenizerModule, adversarial_enabled

LAST = "last.ckpt"


class ResumeError(ValueError):
    """``resume=`` names no checkpoint, or one of another model."""


def find_checkpoint(resume: str) -> Path:
    """The checkpoint that ``resume`` names: a ``.ckpt`` file, or a run directory's ``checkpoints/last.ckpt``."""
    path = Path(resume).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / LAST, path / LAST):
            if candidate.is_file():
                return candidate
        raise ResumeError(f"resume={resume}: the run directory has no checkpoints/{LAST}")
    if not path.is_file():
        raise ResumeError(f"resume={resume}: no such checkpoint file or run directory")
    return path


def differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """Dotted keys where two plain configs differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for key in sorted(set(saved) | set(current)) for d in differences(saved.get(key), current.get(key), f"{where}.{key}")]
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        same = len(saved) == len(current) and all(not differences(a, b) for a, b in zip(saved, current))
        return [] if same else [where.lstrip(".")]
    return [] if saved == current else [where.lstrip(".")]


def resume_checkpoint(resume: str | None, module: TokenizerModule) -> str | None:
    """The checkpoint to resume from (None: a fresh run); ``ResumeError`` if there is none or it holds another model.

    A run resumes with the tokenizer and the optimizers it was started with: the tokenizer
    config and whether adversarial training is on must match the checkpoint's.
    """
    if not resume:
        return None
    path = find_checkpoint(str(resume))
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters", {})
    changed = differences(saved.get("tokenizer"), module.hparams["tokenizer"])
    saved_gan = adversarial_enabled((saved.get("loss") or {}).get("adversarial"))
    if saved_gan != (module.adversarial is not None):
        changed.append("loss.adversarial (on/off)")
    if changed:
        raise ResumeError(
            f"resume={resume}: {path} was trained with a different configuration ({', '.join(changed)}); "
            "resume with the overrides of the original run"
        )
    return str(path)
