"""A transformers image processor's pixel preprocessing (``preprocessor_config.json``) as the per-channel affine map
our encoders take (``input_scale`` / ``input_shift``) from images in [-1, 1]; read as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

from discotok.convert.base import ConvertError

PROCESSOR_FILE = "preprocessor_config.json"


def processor_affine(folder: Path, rescale: float, mean: list[float], std: list[float]) -> dict:
    """``{"rescale", "mean", "std", "scale", "shift"}``: the processor's values (those of ``folder``'s
    ``preprocessor_config.json`` where it has one, else the defaults given) and the map x -> x * scale + shift
    that takes our x in [-1, 1] (pixel p = (x + 1) * 127.5) to the model's input (p * rescale - mean) / std."""
    path = folder / PROCESSOR_FILE
    found = {}
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConvertError(f"{path}: not readable JSON ({err})") from None
        if not isinstance(found, dict):
            raise ConvertError(f"{path}: expected a JSON object")
    try:
        rescale = 1.0 if found.get("do_rescale", True) is False else float(found.get("rescale_factor", rescale))
        if found.get("do_normalize", True) is False:
            mean, std = [0.0] * 3, [1.0] * 3
        else:
            mean, std = per_channel(found.get("image_mean", mean)), per_channel(found.get("image_std", std))
    except (TypeError, ValueError) as err:
        raise ConvertError(f"{path}: rescale_factor, image_mean and image_std must be numbers ({err})") from None
    if len(mean) != 3 or len(std) != 3 or 0.0 in std:
        raise ConvertError(f"{path}: expected three channels' image_mean and non-zero image_std, got {mean} and {std}")
    return {"rescale": rescale, "mean": mean, "std": std, "scale": [127.5 * rescale / s for s in std],
            "shift": [(127.5 * rescale - m) / s for m, s in zip(mean, std)]}


def per_channel(value: float | list[float]) -> list[float]:
    """A processor's mean or std as three floats (a single number is every channel's)."""
    return [float(v) for v in (value if isinstance(value, list) else [value] * 3)]
