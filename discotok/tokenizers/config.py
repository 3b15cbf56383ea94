"""Tokenizer configs: validation of a ``config.json`` (plain values, registered names) and assembly."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from discotok.registry import DECODERS, ENCODERS, QUANTIZERS, ConfigError, check_plain

CONFIG_KEYS = {
    "format", "version", "modality", "image_size", "sample_rate", "channels", "encoder", "quantizer", "decoder",
    "metadata",
}
MODALITIES = ("image", "audio")


def validate_config(config: Any) -> dict:
    """Check a tokenizer config: plain values, known keys, registered component names."""
    if not isinstance(config, dict):
        raise ConfigError(f"tokenizer config must be a JSON object, got {type(config).__name__}")
    check_plain(config, "config")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"config: unknown key(s) {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}")
    for role, registry in (("encoder", ENCODERS), ("quantizer", QUANTIZERS), ("decoder", DECODERS)):
        spec = config.get(role)
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"config: '{role}' must be an object with a registered 'name'")
        registry.get(spec["name"])
    size = config.get("image_size")
    if size is not None and (
        not isinstance(size, list) or len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise ConfigError(f"config: 'image_size' must be [height, width], got {size!r}")
    modality = config.get("modality", "image")
    if modality not in MODALITIES:
        raise ConfigError(f"config: 'modality' must be one of {MODALITIES}, got {modality!r}")
    if modality == "audio":
        for key in ("sample_rate", "channels"):
            value = config.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config: an audio tokenizer needs a positive integer '{key}', got {value!r}")
    return config


def accepts(module: nn.Module, argument: str) -> bool:
    """Whether ``module.forward`` takes a keyword argument named ``argument``."""
    return argument in inspect.signature(module.forward).parameters


def check_prefix_length(k: int, n: int, what: str) -> None:
    """``ValueError`` unless a prefix length ``k`` lies in 1..n."""
    if not 1 <= int(k) <= n:
        raise ValueError(f"{what} must lie in 1..{n} (a prefix of the N = {n} tokens), got {k}")


def tokenizer_config(
    encoder: dict, quantizer: dict, decoder: dict, image_size: Sequence[int] | None = None, **extra: Any
) -> dict:
    """Assemble a tokenizer config dict from component specs (audio: ``modality="audio",
    sample_rate=..., channels=...`` in ``extra``)."""
    config = {"encoder": dict(encoder), "quantizer": dict(quantizer), "decoder": dict(decoder), **extra}
    if image_size is not None:
        config["image_size"] = [int(s) for s in image_size]
    return config
