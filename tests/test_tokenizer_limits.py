"""Tokenizer.from_pretrained against hostile config.json files: sizes checked on the meta device, nesting bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.tokenizers import TokenizerLoadError
from tests.conftest import tiny_tokenizer_config


def saved(tmp_path: Path, name: str, config: dict) -> Path:
    return Tokenizer.from_config(config).save_pretrained(tmp_path / name)


def absurd_cases() -> list[tuple[dict, dict]]:
    """(config the weights were saved with, the same asking for gigabytes)."""
    cases = []
    for quantizer, encoder, part_key, value in (("vq", "grid", None, 50_000_000), ("vq", "grid", None, 10**12),
                                                ("fsq", "vit", "image_size", [10**6, 10**6]),
                                                ("fsq", "titok", "num_tokens", 10**9)):
        base = tiny_tokenizer_config(quantizer, encoder=encoder)
        absurd = json.loads(json.dumps(base))
        if part_key is None:
            absurd["quantizer"]["codebook_size"] = value
        for part in ("encoder", "decoder") if part_key else ():
            absurd[part][part_key] = value
        cases.append((base, absurd))
    return cases


def test_absurd_sizes_are_refused_from_the_weights_header_without_allocating(tmp_path: Path) -> None:
    """Each tokenizer's config.json is swapped for one asking for gigabytes; the check runs under a 1 GB
    address-space margin, so a real allocation would fail there instead of being refused."""
    dirs = []
    for i, (base, absurd) in enumerate(absurd_cases()):
        tok = saved(tmp_path, f"tok{i}", base)
        (tok / "config.json").write_text(json.dumps(absurd))
        dirs.append(str(tok))
    script = textwrap.dedent(f"""
        import resource
        import torch
        torch.set_num_threads(1)
        from discotok import Tokenizer
        from discotok.tokenizers import TokenizerLoadError
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
        for path in {dirs!r}:
            try:
                Tokenizer.from_pretrained(path)
                print("LOADED", path)
            except TokenizerLoadError as err:
                print("REFUSED", str(err).replace(chr(10), " | "))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    for line in lines:
        assert line.startswith("REFUSED ") and "mis-shaped" in line and "|" not in line, line
    assert "quantizer.codebook (file [64, 4], config [50000000, 4])" in lines[0]
    assert "config [1000000000000, 4]" in lines[1]


def test_missing_unexpected_and_mis_shaped_tensors_in_one_error(tmp_path: Path) -> None:
    tok = saved(tmp_path, "tok", tiny_tokenizer_config("vq"))
    tensors = load_file(tok / "model.safetensors")
    del tensors["decoder.net.11.weight"]
    tensors["extra.weight"] = torch.zeros(3)
    tensors["quantizer.codebook"] = torch.zeros(65, 4)
    save_file(tensors, tok / "model.safetensors")
    with pytest.raises(TokenizerLoadError) as err:
        Tokenizer.from_pretrained(tok)
    message = str(err.value)
    assert "model.safetensors does not hold this tokenizer's weights" in message
    for part in ("1 missing: decoder.net.11.weight", "1 unexpected: extra.weight",
                 "1 mis-shaped: quantizer.codebook (file [65, 4], config [64, 4])"):
        assert part in message


@pytest.mark.parametrize("depth, expected", [(100_000, "JSON nested too deeply"), (40, "nested more than 32 levels")])
def test_deeply_nested_config_is_refused_clearly(tmp_path: Path, depth: int, expected: str) -> None:
    tok = saved(tmp_path, "tok", tiny_tokenizer_config("fsq"))
    config = json.dumps(tiny_tokenizer_config("fsq"))[:-1] + ', "metadata": ' + "[" * depth + "]" * depth + "}"
    (tok / "config.json").write_text(config)
    with pytest.raises(TokenizerLoadError, match=expected):
        Tokenizer.from_pretrained(tok)
