"""A tokenizer directory on disk: ``config.json`` (registered names, plain values) and ``model.safetensors``.

Writing is atomic (both files appear complete or not at all). Reading never imports or runs
anything named by the files: the config names registered components only, the weights are
safetensors, and the config is first built on the ``meta`` device and every tensor's shape
compared with the weights file's header (``discotok.tokenizers.weights``), so a config asking
for absurd sizes is refused before anything is allocated. Loading is strict.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from discotok.registry import ConfigError
from discotok.tokenizers.weights import check_weights

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class TokenizerLoadError(RuntimeError):
    """A tokenizer directory is missing, incomplete or inconsistent."""


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (allocation errors carry long C++ traces)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def save_directory(model: nn.Module, config: dict, path: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``model`` to ``path``; files appear complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_model(model, str(tmp / WEIGHTS_NAME))
        path.mkdir(exist_ok=True)
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_config(path: Path) -> dict:
    """The config of a tokenizer directory, after checking both files are there."""
    if not path.is_dir():
        raise TokenizerLoadError(f"tokenizer directory {str(path)!r} does not exist")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise TokenizerLoadError(f"{str(path)!r} is not a complete tokenizer directory: {name} is missing")
    try:
        return json.loads((path / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerLoadError(f"{path / CONFIG_NAME} is not valid JSON: {err}") from err
    except RecursionError:
        raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: JSON nested too deeply") from None


def load_directory(build: Callable[[dict], nn.Module], path: str | os.PathLike, device: str | torch.device) -> nn.Module:
    """Build ``build(config)`` from a tokenizer directory and load its weights strictly; every failure,
    running out of memory included, is a ``TokenizerLoadError`` naming the file."""
    path = Path(path)
    config = read_config(path)
    weights = path / WEIGHTS_NAME
    try:
        with torch.device("meta"):
            shapes_only = build(config)
    except (ConfigError, TypeError, ValueError, RuntimeError, NotImplementedError) as err:
        raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: {err}") from err
    except RecursionError:
        raise TokenizerLoadError(f"{path / CONFIG_NAME} is refused: nested too deeply") from None
    try:
        check_weights(shapes_only, weights)
    except ValueError as err:
        raise TokenizerLoadError(
            f"{weights} does not hold this tokenizer's weights (incomplete or mismatched): {err}"
        ) from None
    except (SafetensorError, OSError) as err:
        raise TokenizerLoadError(f"{weights} is not a readable safetensors file: {err}") from err
    try:
        model = build(config)
    except (MemoryError, RuntimeError) as err:
        raise TokenizerLoadError(f"{path / CONFIG_NAME}: cannot build the tokenizer ({_first_line(err)})") from err
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except (SafetensorError, RuntimeError, OSError, MemoryError) as err:
        raise TokenizerLoadError(
            f"{weights} does not hold this tokenizer's weights (incomplete or mismatched): {_first_line(err)}"
        ) from err
    return model.to(device).eval()
