"""`import discotok` stays light: no Lightning, audio I/O, plotting or Hydra until a feature needs them,
and the `discotok` command answers --help without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("lightning", "pytorch_lightning", "torchaudio", "soundfile", "matplotlib", "hydra", "timm", "torchvision")

PROBE = """
import json, sys
import torch
import discotok
from discotok import Tokenizer
from tests.conftest import tiny_tokenizer_config
tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", image_size=16))
ids = tok.encode(torch.zeros(1, 3, 16, 16))
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY), "ids": list(ids.shape)}))
"""


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{code}"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_image_encode_load_no_heavy_packages():
    result = run(PROBE)
    assert result["ids"][0] == 1 and len(result["ids"]) == 2
    assert result["loaded"] == []


def test_public_names_resolve_lazily():
    import discotok

    assert {"Tokenizer", "Layout", "QuantizerOutput", "ConfigError", "TokenizerLoadError", "extract"} <= set(dir(discotok))
    assert callable(discotok.extract) and discotok.Tokenizer.__name__ == "Tokenizer"


def test_cli_help_does_not_import_torch():
    code = "import sys, io, contextlib\nfrom discotok.cli import main\n" \
           "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n" \
           "import json; print(json.dumps({'loaded': [m for m in ('torch', 'numpy') if m in sys.modules]}))"
    assert run(code)["loaded"] == []
