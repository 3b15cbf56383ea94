"""``discotok convert llamagen``: a LlamaGen VQ checkpoint gives the ids and reconstruction that LlamaGen's own
code gave for the same weights and images (``tests/fixtures/llamagen_small.safetensors``, made by
``tests/fixtures/make_llamagen.py`` from LlamaGen at the commit it names)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.fixtures.make_llamagen import COMMIT, FIXTURE, fixture_input, reference_state


def checkpoint(tmp_path) -> tuple[dict, dict]:
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT
    state = reference_state(json.loads(meta["shapes"]))
    state["quantize.codebook_used"] = torch.zeros(65536)
    torch.save({"model": state, "args": None}, tmp_path / "vq_small.pt")
    return load_file(str(FIXTURE)), state


def test_converted_llamagen_gives_the_reference_ids_and_images(tmp_path, capsys):
    expected, _ = checkpoint(tmp_path)
    assert main(["convert", "llamagen", str(tmp_path / "vq_small.pt"), "-o", str(tmp_path / "tok")]) == 0, \
        capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids = tok.encode(x)
    assert torch.equal(ids, expected["ids"])
    assert (tok.decode(ids) - expected["reconstruction"].clamp(-1, 1)).abs().max() < 1e-4
    assert tok.modality.num_tokens == 128 * 128  # 256x256 images (as published): a 128x128 grid at factor 2


def test_a_damaged_llamagen_checkpoint_is_refused(tmp_path):
    _, state = checkpoint(tmp_path)
    del state["decoder.conv_out.bias"]
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(ConvertError, match="missing: decoder.conv_out.bias"):
        convert("llamagen", tmp_path / "bad.pt")
    torch.save({"optimizer": {}}, tmp_path / "other.pt")
    with pytest.raises(ConvertError, match="not a LlamaGen VQ checkpoint"):
        convert("llamagen", tmp_path / "other.pt")


def test_two_gan_steps_from_a_converted_llamagen(tmp_path, vgg16_random_weights, caplog):
    """Fine-tuning starts from the converted VQGAN (strictly) and trains it with LPIPS and the PatchGAN."""
    from tests.finetuning import moved_from, two_steps

    from discotok.convert.llamagen import read_llamagen

    _, state = checkpoint(tmp_path)  # converted for 32x32 images (fine-tuning keeps the tokenizer's size)
    start = read_llamagen(state, tmp_path / "vq_small.pt", image_size=32)
    start.save_pretrained(tmp_path / "converted")
    with caplog.at_level("INFO"):
        _, tuned = two_steps(tmp_path / "converted", tmp_path / "run", "experiment=vqgan_f16_tiny",
                             "data.image_size=[32,32]", f"loss.perceptual.vgg_weights={vgg16_random_weights}")
    assert f"from {tmp_path / 'converted'}; fresh: adversarial (" in caplog.text
    assert tuned.config["quantizer"] == start.config["quantizer"]
    moved = moved_from(start, tuned)
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("decoder.") for k in moved)
