"""What every converter shares: reading a publisher's file safely, renaming tensors, loading strictly.

A converter (``Converter``) reads the checkpoint a publisher distributes, says which registered
components rebuild it (a plain tokenizer config) and renames its tensors to ours. ``assemble``
then builds the tokenizer and loads the renamed tensors strictly: every tensor of ours must come
from the file, except the ones the converter names as ours alone (bookkeeping buffers the
publisher's model does not have), and every tensor of the file must land somewhere, with its
shape. A publisher's pickle is read with ``torch.load(weights_only=True)``, which builds tensors
and plain containers only and never imports or runs anything the file names.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from discotok.tokenizers.tokenizer import Tokenizer

SHOWN = 8
WEIGHT_NORM = (("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1"))


class ConvertError(ValueError):
    """A source that is not what the format expects, or whose tensors do not fit the architecture."""


def listing(names: Iterable[str]) -> str:
    """The first names of a sorted list, and how many more."""
    names = sorted(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def load_pickle(path: Path, what: str) -> Any:
    """A publisher's ``torch.save`` file, read with ``weights_only=True`` (tensors and plain containers)."""
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (expected {what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as err:
        refused = sorted(set(re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(err))))
        if refused:
            raise ConvertError(
                f"{path}: holds objects that torch.load(weights_only=True) does not build ({', '.join(refused)}) "
                f"beside the tensors; discotok never builds them. Where you trust the file, re-save only what the "
                f"format needs (for a Lightning checkpoint: torch.save({{'state_dict': torch.load(path, "
                f"weights_only=False)['state_dict']}}, new_path)) and convert that (expected {what})") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConvertError(f"{path}: not a readable {what} ({first})") from None


def count(state: dict[str, Tensor], pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over the names of ``state`` (blocks, levels)."""
    return len({m[1] for k in state if (m := re.fullmatch(pattern, k))})


def json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is unreadable or not an object (for ``Converter.recognises``)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def model_config(source: Path, describe: str) -> tuple[Path, dict]:
    """The folder of a hub-style SOURCE (the folder, or a file in it) and its ``config.json``, or ``ConvertError``
    saying what was expected."""
    folder = source if source.is_dir() else source.parent
    path = folder / "config.json"
    if not path.is_file():
        raise ConvertError(f"{folder}: no config.json; expected {describe}")
    config = json_object(path)
    if config is None:
        raise ConvertError(f"{path}: not a JSON object (or unreadable); expected {describe}")
    return folder, config


def checkpoint_and_config(source: Path) -> tuple[Path, Path | None]:
    """The checkpoint and its config (None if there is none) of a SOURCE that is a file (its config: ``NAME.yaml``
    beside it) or a folder (one ``.ckpt``, at most one ``.yaml``)."""
    if source.is_dir():
        ckpts, yamls = sorted(source.glob("*.ckpt")), sorted(source.glob("*.yaml"))
        if len(ckpts) != 1 or len(yamls) > 1:
            raise ConvertError(f"{source}: expected one .ckpt and at most one .yaml, found "
                               f"{[p.name for p in ckpts + yamls]}")
        return ckpts[0], (yamls or [None])[0]
    config = source.with_suffix(".yaml")
    return source, config if config.is_file() else None


def read_yaml(path: Path) -> Any:
    """A publisher's YAML config as plain data (``yaml.safe_load``: nothing it names is built or run)."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise ConvertError(f"{path}: not a readable YAML config ({err})") from None


class Renamed(dict):
    """Tensors under our names; ``origin`` maps each of our names to the publisher's."""

    def __init__(self) -> None:
        super().__init__()
        self.origin: dict[str, str] = {}


Rules = list[tuple[str, Callable[[re.Match], str]]]


def apply_rules(name: str, rules: Rules) -> str:
    """``name`` renamed by the first rule (``re.fullmatch`` pattern, new name of the match) that matches, else as is."""
    for pattern, new in rules:
        if match := re.fullmatch(pattern, name):
            return new(match)
    return name


def rename(tensors: dict[str, Tensor], rules: Rules) -> Renamed:
    """Tensors renamed by the first rule (``re.fullmatch`` pattern, our name of the match) that matches, with
    ``torch.nn.utils.weight_norm``'s ``weight_g`` / ``weight_v`` turned into our parametrisation's names;
    a name no rule matches keeps its name (and is then reported as unexpected)."""
    out = Renamed()
    for theirs, tensor in tensors.items():
        name = theirs
        for old, new in WEIGHT_NORM:
            if name.endswith("." + old):
                name = name[: -len(old)] + new
        name = apply_rules(name, rules)
        out[name] = tensor
        out.origin[name] = theirs
    return out


def fold_weight_norm(g: Tensor, v: Tensor) -> Tensor:
    """The weight ``g * v / ||v||`` of ``torch.nn.utils.weight_norm`` (norm over every dimension but the first)."""
    return g * v / v.flatten(1).norm(dim=1).reshape(-1, *[1] * (v.ndim - 1))


def split_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Plain convolution weights as ``weight_g`` / ``weight_v`` (g = the norm of each first-dimension slice), in
    float32 (a half-precision norm would change the weight it gives back)."""
    out = {}
    for name, tensor in state.items():
        if name.endswith(".weight") and tensor.ndim == 3:
            out[name[: -len("weight")] + "weight_g"] = tensor.float().flatten(1).norm(dim=1).reshape(-1, 1, 1)
            out[name[: -len("weight")] + "weight_v"] = tensor.float()
        else:
            out[name] = tensor
    return out


def assemble(config: dict, tensors: dict[str, Tensor], own: Iterable[str] = ()) -> Tokenizer:
    """Build the tokenizer of ``config`` and load ``tensors`` into it strictly.

    ``own`` are regular expressions of our tensors the source does not hold (they keep their
    initial values). ``ConvertError`` lists every missing, unexpected or mis-shaped tensor.
    """
    tok = Tokenizer.from_config(config)
    ours = tok.state_dict()
    own = [re.compile(p) for p in own]
    missing = [k for k in ours if k not in tensors and not any(p.fullmatch(k) for p in own)]
    origin = tensors.origin if isinstance(tensors, Renamed) else {}

    def named(key: str) -> str:
        return f"{key} (the source's {origin[key]})" if origin.get(key, key) != key else key

    unexpected = [named(k) for k in tensors if k not in ours]
    shapes = [f"{named(k)} {tuple(t.shape)} (expected {tuple(ours[k].shape)})" for k, t in tensors.items()
              if k in ours and tuple(t.shape) != tuple(ours[k].shape)]
    problems = [f"{len(v)} {what}: {listing(v)}" for what, v in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if v]
    if problems:
        raise ConvertError("the tensors do not fit the architecture: " + "; ".join(problems))
    state = {k: tensors.get(k, v) for k, v in ours.items()}
    tok.load_state_dict({k: v.to(ours[k].dtype) for k, v in state.items()}, strict=True)
    return tok.eval()


class Converter:
    """One publisher format: ``read(source)`` gives the tokenizer (built from registered components, loaded
    strictly); ``describe`` says what SOURCE is."""

    name: ClassVar[str]
    describe: ClassVar[str]
    source_patterns: ClassVar[tuple[str, ...]]  # file names of its checkpoints in a publisher's hub repository

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """Whether ``path``, a file matching ``source_patterns``, is this format's (formats whose files share a
        name, such as ``config.json``, tell theirs apart by content; hub names use it)."""
        return True

    def read(self, source: Path) -> Tokenizer:
        raise NotImplementedError
