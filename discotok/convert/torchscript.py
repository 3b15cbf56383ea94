"""Reading the tensors of a TorchScript file (``torch.jit.save``) as data, without running or loading it.

A TorchScript file is a zip: ``<name>/data.pkl`` pickles the module tree (objects of ``__torch__.*``
classes whose state is an attribute dict), ``<name>/data/<key>`` hold the tensors' storages and
``<name>/code/`` the compiled code, which is never read. ``read_torchscript`` unpickles ``data.pkl``
with a restricted unpickler: a ``__torch__.*`` class becomes an inert ``ScriptObject`` that records its
class name and attributes; tensors are rebuilt by the functions ``torch.load(weights_only=True)`` allows
(``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``, typed storages, ``OrderedDict``); the
list builders of ``torch.jit._pickle`` become plain lists. Any other global is refused with a
``ConvertError`` before anything is built, so nothing from the file is imported or executed
(``torch.jit.load`` would compile and run its code).
"""

from __future__ import annotations

import collections
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from discotok.convert.base import ConvertError

STORAGES = {f"{name}Storage": dtype for name, dtype in (
    ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
    ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16), ("Char", torch.int8),
    ("Byte", torch.uint8), ("Bool", torch.bool))}
REBUILDERS = {("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
              ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
              ("collections", "OrderedDict"): collections.OrderedDict}
LISTS = {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_strlist"}


@dataclass
class ScriptObject:
    """An object of a TorchScript class, as data: its class name and its attributes."""

    cls: str
    attributes: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ConvertError(f"a {self.cls} object whose state is a {type(state).__name__}, not attributes")
        self.attributes = state


def script_class(name: str) -> type:
    """A placeholder class for the TorchScript class ``name``: building it records ``name``, nothing else."""

    def new(cls: type, *args: Any) -> ScriptObject:
        if args:
            raise ConvertError(f"a {name} object built with arguments")
        return ScriptObject(name)

    return type("ScriptClass", (), {"__new__": new})


def plain_list(items: list) -> list:
    """``torch.jit._pickle.build_*list``: the list itself."""
    return list(items)


class ScriptUnpickler(pickle.Unpickler):
    """Builds ``ScriptObject``s, tensors and plain containers; refuses every other global."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return script_class(f"{module}.{name}")
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        if module == "torch.jit._pickle" and name in LISTS:
            return plain_list
        if (module, name) in REBUILDERS:
            return REBUILDERS[(module, name)]
        raise ConvertError(f"{self.path}: the TorchScript pickle names {module}.{name}, which discotok does not "
                           "build (only __torch__ modules, tensors and plain containers); nothing was run")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise ConvertError(f"{self.path}: an unexpected persistent id in the TorchScript pickle ({pid!r:.80})")
        _, dtype, key, _location, numel = pid
        try:
            data = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        except KeyError:
            raise ConvertError(f"{self.path}: the storage {key} is missing from the archive") from None
        flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise ConvertError(f"{self.path}: storage {key} holds {flat.numel()} values, {numel} expected")
        return torch.storage.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=dtype, _internal=True)


def read_torchscript(path: Path) -> ScriptObject:
    """The module tree of the TorchScript file ``path`` as ``ScriptObject``s holding tensors."""
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (expected a TorchScript file)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ConvertError(f"{path}: not a TorchScript file (not a zip archive)") from None
    with archive:
        pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise ConvertError(f"{path}: not a TorchScript file (expected one <name>/data.pkl, found {len(pickles)})")
        prefix = pickles[0].split("/")[0]
        if not any(n.startswith(f"{prefix}/code/") for n in archive.namelist()):
            raise ConvertError(f"{path}: not a TorchScript file (no {prefix}/code/; a torch.save file?)")
        byteorder = archive.read(f"{prefix}/byteorder").decode() if f"{prefix}/byteorder" in archive.namelist() \
            else "little"
        if byteorder != "little":
            raise ConvertError(f"{path}: a {byteorder}-endian TorchScript file; only little-endian ones are read")
        with archive.open(pickles[0]) as f:
            try:
                root = ScriptUnpickler(f, archive, prefix, path).load()
            except ConvertError:
                raise
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, RuntimeError) as err:
                raise ConvertError(f"{path}: not a readable TorchScript pickle ({err})") from None
    if not isinstance(root, ScriptObject):
        raise ConvertError(f"{path}: the TorchScript pickle holds a {type(root).__name__}, not a module")
    return root


def script_tensors(root: ScriptObject, prefix: str = "") -> dict[str, Tensor]:
    """Every tensor attribute of the module tree (parameters and all buffers), by its dotted module path."""
    out: dict[str, Tensor] = {}
    for name, value in root.attributes.items():
        if isinstance(value, Tensor):
            out[prefix + name] = value.detach()
        elif isinstance(value, ScriptObject):
            out.update(script_tensors(value, f"{prefix}{name}."))
    return out
