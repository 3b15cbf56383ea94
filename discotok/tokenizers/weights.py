"""A tokenizer's weights file against its config, before anything is allocated.

``config.json`` decides every tensor's size (a 1 KB file can ask for ``codebook_size: 10**12``),
so ``Tokenizer.from_pretrained`` first builds the module on the ``meta`` device (shapes, no
storage), reads the shapes in ``model.safetensors``' header (``safe_open`` reads the header
only) and compares them: every missing, unexpected or mis-shaped tensor is listed in one
error. Only a config whose tensors all match the file, which holds their bytes, is built for real.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from torch import nn

SHOWN = 5


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading the tensors."""
    with safe_open(str(path), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def weight_mismatches(module: nn.Module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What differs between ``module``'s state dict (built on any device, ``meta`` included) and the
    file's tensors ``shapes``: missing, unexpected and mis-shaped tensors, one phrase each (empty: none).

    Tied tensors (one object under several names) need only one of their names in the file, as
    ``safetensors.torch.save_model`` writes them.
    """
    aliases: dict[int, list[str]] = {}
    state = module.state_dict(keep_vars=True)
    for name, tensor in state.items():
        aliases.setdefault(id(tensor), []).append(name)
    missing, wrong = [], []
    for names in aliases.values():
        held = [n for n in names if n in shapes]
        if not held:
            missing.append(names[0])
        for name in held:
            want = tuple(state[name].shape)
            if shapes[name] != want:
                wrong.append(f"{name} (file {list(shapes[name])}, config {list(want)})")
    unexpected = sorted(set(shapes) - set(state))
    problems = []
    for what, names in (("missing", sorted(missing)), ("unexpected", unexpected), ("mis-shaped", wrong)):
        if names:
            problems.append(f"{len(names)} {what}: {_listing(names)}")
    return problems


def check_weights(module: nn.Module, path: Path) -> None:
    """``ValueError`` listing every tensor of ``path`` that does not match ``module``; ``SafetensorError`` /
    ``OSError`` when the file's header cannot be read."""
    problems = weight_mismatches(module, header_shapes(path))
    if problems:
        raise ValueError("; ".join(problems))

