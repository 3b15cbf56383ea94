"""``discotok train [hydra overrides...]``: the Hydra app (config groups, ``-m`` sweeps, ``--cfg job``,
``--help``); Lightning and the training code are imported when a run starts (``discotok.train.run``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from discotok.defaults import config_dir


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_main(cfg: DictConfig) -> dict[str, Any]:
    from discotok.losses import MissingWeightsError
    from discotok.registry import ConfigError
    from discotok.train.resume import ResumeError
    from discotok.train.run import train

    try:
        return train(cfg)
    except (ConfigError, MissingWeightsError, ResumeError) as err:  # a setting to fix: the message, no traceback
        print(f"discotok train: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def folder_data(folder: Path, look_at: int = 200) -> str:
    """The data config of a folder: the ``folder_data`` of the modality most of its first ``look_at`` files
    belong to (by extension), that of the default modality (images) when none has a majority."""
    files = [p for _, p in zip(range(look_at), (p for p in folder.rglob("*") if p.is_file()))] if folder.is_dir() else []
    from discotok.registry import MODALITIES
    from discotok.tokenizers.config import DEFAULT_MODALITY

    for name in MODALITIES.names():
        modality = MODALITIES.get(name)
        if sum(p.suffix.lower() in modality.file_extensions() for p in files) * 2 > len(files) > 0:
            return modality.folder_data
    return MODALITIES.get(DEFAULT_MODALITY).folder_data


def rewrite_overrides(argv: list[str]) -> list[str]:
    """Let ``data=<folder>`` name a folder: ``data=image_folder data.source=<folder>``, or the folder data
    config of the modality whose files the folder mostly holds (``data=audio_folder ...`` for audio)."""
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("data", "+data") and value and (os.sep in value or Path(value).is_dir()) and "," not in value:
            folder = Path(value).expanduser().resolve()
            out += [f"data={folder_data(folder)}", f"data.source={folder}"]
        else:
            out.append(arg)
    return out


def main(argv: list[str]) -> int:
    """``discotok train [hydra overrides...]``."""
    sys.argv = ["discotok train", *rewrite_overrides(argv)]
    hydra_main()
    return 0
