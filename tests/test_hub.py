"""Hub names, offline: ``Tokenizer.from_pretrained("org/name")`` and ``discotok convert FORMAT org/name`` read a
local Hugging Face cache that the test builds (``HF_HUB_OFFLINE=1``); a publisher's repository is converted once
and cached; revisions pin; a name that is not cached is a clear error; ``push_to_hub`` uploads our two files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from tests.conftest import tiny_tokenizer_config

pytest.importorskip("dac")

PROBE = r"""
import contextlib, io, json, sys
import torch
from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.tokenizers import TokenizerLoadError

out = {}
x = torch.rand(2, 3, 16, 16) * 2 - 1
out["main"] = Tokenizer.from_pretrained("discotok-test/tiny").encode(x).tolist()
out["v1"] = Tokenizer.from_pretrained("discotok-test/tiny", revision="v1").encode(x).tolist()
wave = torch.linspace(-0.5, 0.5, 1000).sin()[None, None]
for attempt in ("first", "second"):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        out[attempt] = Tokenizer.from_pretrained("descript-test/dac").encode(wave).tolist()
    out[attempt + "_message"] = err.getvalue()
for name in ("nobody/absent",):
    try:
        Tokenizer.from_pretrained(name)
    except TokenizerLoadError as e:
        out["absent"] = str(e)
try:
    convert("encodec", "descript-test/dac")
except ConvertError as e:
    out["wrong_format"] = str(e)
out["cli"] = main(["convert", "dac", "descript-test/dac", "-o", sys.argv[1]])
print(json.dumps(out))
"""


def cache_repo(hub: Path, repo: str, files: dict[str, Path], commit: str, refs: tuple[str, ...] = ("main",)) -> None:
    """A repository in huggingface_hub's cache layout: ``models--org--name/snapshots/<commit>/`` and refs."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (snap / name).write_bytes(source.read_bytes())
    (folder / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(commit)


def test_hub_names_resolve_offline_and_publisher_repos_convert_once(tmp_path):
    from tests.test_convert_dac import reference, saved

    hub = tmp_path / "hf" / "hub"
    torch.manual_seed(0)
    first = Tokenizer.from_config(tiny_tokenizer_config("fsq", image_size=16)).save_pretrained(tmp_path / "a")
    torch.manual_seed(1)
    second = Tokenizer.from_config(tiny_tokenizer_config("fsq", image_size=16)).save_pretrained(tmp_path / "b")
    files = ("config.json", "model.safetensors")
    cache_repo(hub, "discotok-test/tiny", {f: first / f for f in files}, "a" * 40)
    cache_repo(hub, "discotok-test/tiny", {f: second / f for f in files}, "b" * 40, refs=("v1",))
    dac_file = saved(reference("even_rates"), tmp_path / "weights.pth")
    cache_repo(hub, "descript-test/dac", {"weights.pth": dac_file, "README.md": tmp_path / "a" / "config.json"}, "c" * 40)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "cli_out")], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["main"] != out["v1"]  # the two revisions hold different weights
    assert "converting descript-test/dac (dac: weights.pth)" in out["first_message"]
    assert out["second_message"] == "" and out["first"] == out["second"]  # converted once, then from the cache
    assert (tmp_path / "xdg" / "discotok" / "converted" / "descript-test--dac" / ("c" * 40) / "config.json").is_file()
    assert "'nobody/absent' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in out["absent"]
    assert "descript-test/dac holds a dac checkpoint (weights.pth); FORMAT encodec was asked for" in out["wrong_format"]
    assert out["cli"] == 0 and Tokenizer.from_pretrained(tmp_path / "cli_out").modality.name == "audio"


def test_push_to_hub_uploads_config_and_weights(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))
            return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", image_size=16))
    url = tok.push_to_hub("me/tiny", private=True, token="t")
    assert url == "https://hub/me/tiny/commit/1"
    assert calls == [("token", "t"), ("create", "me/tiny", True, True),
                     ("upload", "me/tiny", ["config.json", "model.safetensors"], "discotok tokenizer")]
