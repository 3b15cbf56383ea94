"""Tokenizer configs: validation of a ``config.json`` (plain values, registered names) and assembly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from discotok.registry import DECODERS, ENCODERS, MODALITIES, QUANTIZERS, ConfigError, check_plain

COMMON_KEYS = ("format", "version", "modality", "encoder", "quantizer", "decoder", "metadata")
DEFAULT_MODALITY = "image"


def validate_config(config: Any) -> dict:
    """Check a tokenizer config: plain values, known keys (the modality's own among them), registered names."""
    if not isinstance(config, dict):
        raise ConfigError(f"tokenizer config must be a JSON object, got {type(config).__name__}")
    check_plain(config, "config")
    name = config.get("modality", DEFAULT_MODALITY)
    try:
        modality = MODALITIES.get(name)
    except ConfigError:
        raise ConfigError(f"config: 'modality' must be one of {MODALITIES.names()}, got {name!r}") from None
    allowed = {*COMMON_KEYS, *modality.config_keys}
    unknown = set(config) - allowed
    if unknown:
        raise ConfigError(f"config: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for role, registry in (("encoder", ENCODERS), ("quantizer", QUANTIZERS), ("decoder", DECODERS)):
        spec = config.get(role)
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"config: '{role}' must be an object with a registered 'name'")
        registry.get(spec["name"])
    modality.validate_config(config)
    return config


def tokenizer_config(
    encoder: dict, quantizer: dict, decoder: dict, image_size: Sequence[int] | None = None, **extra: Any
) -> dict:
    """Assemble a tokenizer config dict from component specs and the modality's fields (audio:
    ``modality="audio", sample_rate=..., channels=...`` in ``extra``)."""
    config = {"encoder": dict(encoder), "quantizer": dict(quantizer), "decoder": dict(decoder), **extra}
    if image_size is not None:
        config["image_size"] = [int(s) for s in image_size]
    return config
