"""Hugging Face Hub names: ``Tokenizer.from_pretrained("org/name")`` and ``discotok convert FORMAT org/name``.

A name that is not a local directory and reads ``org/name`` is fetched with ``huggingface_hub``
(its cache under ``$HF_HOME``, ``HF_HUB_OFFLINE=1`` to stay offline, ``revision=`` to pin a branch,
tag or commit). A repository in our format (``config.json`` with ``"format": "discotok.tokenizer"``)
loads as it is; a publisher's repository holding one checkpoint a converter reads (a DAC ``.pth``,
an EnCodec ``.th``) is converted once, with a message saying so, and the converted directory is
cached under ``~/.cache/discotok/converted/<org>--<name>/<commit>/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from discotok.registry import CONVERTERS
from discotok.tokenizers.files import CONFIG_NAME, WEIGHTS_NAME, TokenizerLoadError

HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
FORMAT = "discotok.tokenizer"


def is_hub_name(name: str | os.PathLike) -> bool:
    """Whether ``name`` reads as a hub repository (``org/name``) and is not a local path."""
    text = str(name)
    return bool(HUB_NAME.fullmatch(text)) and not Path(text).exists()


def converted_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "discotok" / "converted"


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of a hub repository (downloaded unless offline); ``TokenizerLoadError`` says why not."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise TokenizerLoadError(
            f"hub name {repo_id!r}{f' at {revision!r}' if revision else ''} is not in the local Hugging Face cache "
            f"and {why}; fetch it once online, or give a local directory"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise TokenizerLoadError(f"hub name {repo_id!r}: {' '.join(str(err).split())[:300]}") from None


def publisher_checkpoint(folder: Path) -> tuple[str, Path]:
    """The format and file of the one publisher checkpoint in ``folder`` that a registered converter reads."""
    found = [(name, path) for name in CONVERTERS.names() for pattern in CONVERTERS.get(name).source_patterns
             for path in sorted(folder.glob(pattern)) if CONVERTERS.get(name).recognises(path)]
    if len(found) != 1:
        files = sorted(p.name for p in folder.iterdir())[:12]
        what = "no checkpoint" if not found else f"{len(found)} candidate checkpoints"
        raise TokenizerLoadError(
            f"{folder}: neither a discotok tokenizer nor a publisher's checkpoint discotok converts: {what} "
            f"({', '.join(n for n in CONVERTERS.names())} read "
            f"{', '.join(p for n in CONVERTERS.names() for p in CONVERTERS.get(n).source_patterns)}); files: {files}"
        )
    return found[0]


def is_ours(folder: Path) -> bool:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT and (folder / WEIGHTS_NAME).is_file()


def resolve(name: str | os.PathLike, revision: str | None = None) -> Path:
    """A local tokenizer directory for ``name``: itself when local; for a hub name its snapshot (ours) or its
    converted, cached copy (a publisher's)."""
    if not is_hub_name(name):
        return Path(name)
    repo_id = str(name)
    folder = snapshot(repo_id, revision)
    if is_ours(folder):
        return folder
    target = converted_root() / repo_id.replace("/", "--") / folder.name
    if is_ours(target):
        return target
    fmt, checkpoint = publisher_checkpoint(folder)
    print(f"discotok: converting {repo_id} ({fmt}: {checkpoint.name}) to discotok's format in {target}", file=sys.stderr)
    CONVERTERS.get(fmt)().read(checkpoint).save_pretrained(target)
    return target
