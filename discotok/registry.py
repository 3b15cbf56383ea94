"""Build components by registered name.

A component (encoder, quantizer, decoder, ...) registers itself under a short name.
Configs — Hydra's and a saved tokenizer's ``config.json`` — name components only by
these names and pass plain keyword arguments, so building from a config never imports
or runs code named by the config.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, TypeVar

T = TypeVar("T")

PLAIN_TYPES = (str, int, float, bool, type(None))
FORBIDDEN_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
MAX_CONFIG_DEPTH = 32


class ConfigError(ValueError):
    """A configuration names something unknown or carries a value that is not plain."""


def check_plain(value: Any, where: str = "config", depth: int = 0) -> None:
    """Raise ``ConfigError`` unless ``value`` is plain JSON data with no Hydra/import keys, nested at
    most ``MAX_CONFIG_DEPTH`` levels."""
    if isinstance(value, PLAIN_TYPES):
        return
    if depth >= MAX_CONFIG_DEPTH:
        raise ConfigError(f"{where[:60]}...: nested more than {MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {key!r} is not a string")
            if key in FORBIDDEN_KEYS or key.startswith("_"):
                raise ConfigError(
                    f"{where}: key {key!r} is not allowed; components are named by registered "
                    "name only, never by import path"
                )
            check_plain(item, f"{where}.{key}", depth + 1)
        return
    raise ConfigError(f"{where}: value of type {type(value).__name__} is not plain data")


class Registry:
    """A table from names to component classes of one role (``quantizer``, ``encoder``...).

    ``modules`` are the modules (packages) that register the role's components; they are
    imported the first time a name is looked up, so ``import discotok`` stays light and any entry point
    (a saved tokenizer, a Hydra config, a test) finds every registered name.
    """

    def __init__(self, role: str, modules: tuple[str, ...] = ()) -> None:
        self.role = role
        self.modules = modules
        self._entries: dict[str, Callable[..., Any]] = {}

    def _load(self) -> None:
        for module in self.modules:
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``cls`` under ``name``."""

        def wrap(cls: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.role} {name!r} is registered twice")
            self._entries[name] = cls  # type: ignore[assignment]
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        """The component class registered under ``name``; ``ConfigError`` if there is none."""
        self._load()
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(
                f"unknown {self.role} {name!r}; registered {self.role}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def build(self, spec: dict[str, Any], **extra: Any) -> Any:
        """Build from ``{"name": ..., **kwargs}``; unknown keyword arguments are refused."""
        spec = dict(spec)
        check_plain(spec, self.role)
        if "name" not in spec:
            raise ConfigError(f"{self.role} config needs a 'name' (one of {', '.join(self.names())})")
        cls = self.get(spec.pop("name"))
        kwargs = {**spec, **extra}
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params) - {"self"})
            if unknown:
                raise ConfigError(
                    f"{self.role} {cls.registered_name!r} got unknown argument(s) {unknown}; "
                    f"it accepts {sorted(set(params) - {'self'})}"
                )
        return cls(**kwargs)


QUANTIZERS = Registry("quantizer", ("discotok.quantizers",))
ENCODERS = Registry("encoder", ("discotok.encoders",))
DECODERS = Registry("decoder", ("discotok.decoders",))
MODALITIES = Registry("modality", ("discotok.modalities",))
CONVERTERS = Registry("converter", ("discotok.convert",))
DISCRIMINATORS = Registry("discriminator", ("discotok.discriminators",))
LOSSES = Registry("loss", ("discotok.losses",))
DATAMODULES = Registry("datamodule", ("discotok.data.datamodule", "discotok.data.audio_datamodule"))
