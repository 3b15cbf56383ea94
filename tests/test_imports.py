"""`import discotok` stays light: no Lightning, audio I/O, plotting or Hydra until a feature needs them,
and the `discotok` command answers --help without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from discotok.commands.bench import BENCH_ARGUMENTS
from tests.conftest import ENCODERS

HEAVY = ("lightning", "pytorch_lightning", "torchaudio", "soundfile", "matplotlib", "hydra", "timm", "torchvision")

PROBE = """
import json, sys
import torch
import discotok
from discotok import Tokenizer
from tests.conftest import tiny_audio_config, tiny_tokenizer_config
tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", image_size=16))
ids = tok.encode(torch.zeros(1, 3, 16, 16))
audio = Tokenizer.from_config(tiny_audio_config())
wave = audio.decode(audio.encode(torch.zeros(2, 1, 1000), torch.tensor([1000, 700])), lengths=torch.tensor([1000, 700]))
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY), "ids": list(ids.shape),
                  "wave": list(wave.shape)}))
"""


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{code}"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_image_and_audio_round_trips_load_no_heavy_packages():
    result = run(PROBE)
    assert result["ids"][0] == 1 and len(result["ids"]) == 2 and result["wave"][:2] == [2, 1]
    assert result["loaded"] == []


LOAD_PROBE = """
import json, sys, tempfile
import torch
from discotok import Tokenizer
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config
configs = [tiny_tokenizer_config(name, encoder="patch") for name in TINY_QUANTIZERS]
configs += [tiny_tokenizer_config("fsq", encoder=name) for name in CONV_ENCODERS]
for config in configs:
    with tempfile.TemporaryDirectory() as folder:
        Tokenizer.from_config(config).save_pretrained(folder)
        Tokenizer.from_pretrained(folder)
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor")))}))
"""


def test_loading_a_tokenizer_does_not_import_the_compiler():
    """A shapes-only build on the meta device must do no tensor arithmetic: on meta tensors it runs torch's
    decompositions, which import torch._dynamo (about a second of every command's start-up). Checked for the image
    tokenizers of convolutions and every quantizer; left out: the ViT encoders, whose timm blocks import torchvision
    and with it the compiler, and the audio ones, whose weight norm computes norms at construction."""
    conv = [name for name in ENCODERS if name in ("grid", "magvit2", "patch")]
    assert run(f"CONV_ENCODERS = {conv!r}\n{LOAD_PROBE}")["loaded"] == []


def test_public_names_resolve_lazily():
    import discotok

    assert {"Tokenizer", "Layout", "QuantizerOutput", "ConfigError", "TokenizerLoadError", "extract"} <= set(dir(discotok))
    assert callable(discotok.extract) and discotok.Tokenizer.__name__ == "Tokenizer"


HELP = """
import contextlib, io, json, sys
from discotok.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(ARGV)
    except SystemExit:
        pass
print(json.dumps({"loaded": [m for m in ("torch", "numpy", "lightning") if m in sys.modules]}))
"""


BENCH_HELP = [["bench", name, "--help"] for name in BENCH_ARGUMENTS]


@pytest.mark.parametrize("argv", [["--help"], ["encode", "--help"], ["decode", "--help"], ["eval", "--help"],
                                  ["quantize-after", "--help"], ["train", "--help"], ["bench", "--help"], *BENCH_HELP])
def test_command_help_imports_neither_torch_nor_lightning(argv):
    assert run(HELP.replace("ARGV", repr(argv)))["loaded"] == []
