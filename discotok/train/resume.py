"""``resume=<run dir or checkpoint>``: find a checkpoint that loads and check it belongs to this model.

A run directory resumes from ``checkpoints/last.ckpt``; when that is missing or does not load
(a run killed while writing it), from the newest other checkpoint of the run that loads, said
in one printed line. A named ``.ckpt`` file is used as it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from discotok.train.module import TokenizerModule, adversarial_enabled

LAST = "last.ckpt"


class ResumeError(ValueError):
    """``resume=`` names no checkpoint, one that does not load, or one of another model."""


def read_header(path: Path) -> dict:
    """The checkpoint's hyperparameters (memory-mapped, tensors only); raises a one-line ``ResumeError`` reason."""
    if path.stat().st_size == 0:
        raise ResumeError("empty file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ResumeError(f"does not load: {str(err).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ResumeError("not a Lightning checkpoint (no state_dict)")
    return ckpt.get("hyper_parameters", {})


def candidates(run_dir: Path) -> list[Path]:
    """A run directory's checkpoints to try: ``last.ckpt`` first, then the others newest first."""
    found = []
    for folder in (run_dir / "checkpoints", run_dir):
        if (folder / LAST).is_file():
            found.append(folder / LAST)
        others = [p for p in folder.glob("*.ckpt") if p.name != LAST and not p.name.startswith(".") and p.is_file()]
        found += sorted(others, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    return found


def is_rank_zero() -> bool:
    """Whether this process is the first of its run (before Lightning knows the ranks)."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def find_checkpoint(resume: str) -> tuple[Path, dict]:
    """The checkpoint that ``resume`` names and its hyperparameters: a ``.ckpt`` file, or the first
    of a run directory's ``candidates`` that loads."""
    path = Path(resume).expanduser()
    if path.is_file():
        try:
            return path, read_header(path)
        except ResumeError as err:
            raise ResumeError(f"resume={resume}: {path} {err}") from None
    if not path.is_dir():
        raise ResumeError(f"resume={resume}: no such checkpoint file or run directory")
    tried = []
    for candidate in candidates(path):
        try:
            header = read_header(candidate)
        except ResumeError as err:
            tried.append(f"{candidate.name} ({err})")
            continue
        if candidate.name != LAST and is_rank_zero():
            why = ", ".join(tried) if tried else f"{LAST} is missing"
            print(f"discotok train: resume={resume}: {why}; resuming from {candidate}", file=sys.stderr)
        return candidate, header
    if not tried:
        raise ResumeError(f"resume={resume}: the run directory has no checkpoints/{LAST} (no .ckpt file at all)")
    raise ResumeError(f"resume={resume}: no checkpoint of the run loads; tried {', '.join(tried)}")


def differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """Dotted keys where two plain configs differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for key in sorted(set(saved) | set(current)) for d in differences(saved.get(key), current.get(key), f"{where}.{key}")]
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        same = len(saved) == len(current) and all(not differences(a, b) for a, b in zip(saved, current))
        return [] if same else [where.lstrip(".")]
    return [] if saved == current else [where.lstrip(".")]


def resume_checkpoint(resume: str | None, module: TokenizerModule) -> str | None:
    """The checkpoint to resume from (None: a fresh run); ``ResumeError`` if there is none that
    loads or it holds another model.

    A run resumes with the tokenizer and the optimizers it was started with: the tokenizer
    config and whether adversarial training is on must match the checkpoint's.
    """
    if not resume:
        return None
    path, saved = find_checkpoint(str(resume))
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
