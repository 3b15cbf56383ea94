"""``discotok convert ibq``: an IBQ Lightning checkpoint gives the ids and reconstruction that SEED-Voken's own IBQ
code gave for the same weights and images (``tests/fixtures/ibq_small.safetensors``, made by
``tests/fixtures/make_ibq.py`` at the commit it names), with the EMA weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.convert.ibq import read_ibq
from discotok.layout import Layout
from tests.fixtures.make_ibq import ARCHITECTURE, COMMIT, FIXTURE, fixture_input, reference_state


def reference_checkpoint() -> tuple[dict, dict]:
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT
    return load_file(str(FIXTURE)), reference_state(json.loads(meta["shapes"]))


def test_converted_ibq_gives_the_reference_ids_and_images(tmp_path, capsys):
    expected, state = reference_checkpoint()
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, tmp_path / "imagenet256_small.ckpt")
    assert main(["convert", "ibq", str(tmp_path / "imagenet256_small.ckpt"), "-o", str(tmp_path / "tok")]) == 0, \
        capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids, layout = tok.encode(x, return_layout=True)
    assert layout == Layout("grid", (16, 16))
    assert ids.unique().numel() > 60  # of 512 tokens and 256 codes
    assert torch.equal(ids, expected["ids"])
    with torch.no_grad():
        raw = tok.decoder(tok.quantizer.ids_to_codes(ids), layout)  # before the [-1, 1] clamp
    assert (raw - expected["reconstruction"]).abs().max() < 1e-4
    assert (tok.decode(ids, layout) - expected["reconstruction"].clamp(-1, 1)).abs().max() < 1e-4
    assert tok.codebook_size == ARCHITECTURE["codebook_size"] and tok.config["image_size"] == [256, 256]
    q = tok.config["quantizer"]
    assert (q["dot_product"], q["projections"], q["cosine"]) == (True, True, False)
    assert tok.config["metadata"]["converted_from"] == "ibq" and tok.config["metadata"]["weights"] == "ema"


def test_training_weights_and_refusals(tmp_path):
    expected, state = reference_checkpoint()
    training = {k: v for k, v in state.items() if not k.startswith("model_ema.")}
    tok = read_ibq(training, tmp_path / "no_ema.ckpt")
    assert tok.config["metadata"]["weights"] == "training"
    assert not torch.equal(tok.encode(fixture_input()), expected["ids"])  # the reference used the EMA weights
    damaged = {k: v for k, v in state.items() if k not in ("post_quant_conv.bias", "model_ema.post_quant_convbias")}
    with pytest.raises(ConvertError, match="1 missing: quantizer.project_out.bias"):
        read_ibq(damaged, tmp_path / "bad.ckpt")
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ConvertError, match="not an IBQ state dict"):
        convert("ibq", tmp_path / "other.ckpt")


def test_an_open_magvit2_checkpoint_is_refused_as_ibq(tmp_path):
    from tests.fixtures.make_open_magvit2 import FIXTURE as OMV2
    from tests.fixtures.make_open_magvit2 import reference_state as omv2_state

    with safe_open(str(OMV2), framework="pt") as f:
        shapes = json.loads(f.metadata()["shapes"])
    torch.save({"state_dict": omv2_state(shapes)}, tmp_path / "imagenet_256_L.ckpt")
    with pytest.raises(ConvertError, match="not an IBQ state dict"):
        convert("ibq", tmp_path / "imagenet_256_L.ckpt")
