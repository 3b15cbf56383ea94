"""``discotok convert open_magvit2``: an Open-MAGVIT2 Lightning checkpoint gives the ids and reconstruction that
Open-MAGVIT2's own code gave for the same weights and images (``tests/fixtures/open_magvit2_small.safetensors``,
made by ``tests/fixtures/make_open_magvit2.py`` from SEED-Voken at the commit it names), with the EMA weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.convert.open_magvit2 import read_open_magvit2
from discotok.layout import Layout
from tests.fixtures.make_open_magvit2 import ARCHITECTURE, COMMIT, FIXTURE, fixture_input, reference_state


def reference_checkpoint() -> tuple[dict, dict]:
    """The fixture's tensors and the Lightning checkpoint's state dict (training weights, EMA copy, loss)."""
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT
    return load_file(str(FIXTURE)), reference_state(json.loads(meta["shapes"]))


def save_lightning(state: dict, path) -> None:
    """What Lightning's ``trainer.save_checkpoint`` writes, with plain values only."""
    torch.save({"epoch": 269, "global_step": 1350000, "pytorch-lightning_version": "2.2.0", "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}, path)


def test_converted_open_magvit2_gives_the_reference_ids_and_images(tmp_path, capsys):
    expected, state = reference_checkpoint()
    save_lightning(state, tmp_path / "imagenet_small_L.ckpt")
    assert main(["convert", "open_magvit2", str(tmp_path / "imagenet_small_L.ckpt"), "-o", str(tmp_path / "tok")]) == 0, \
        capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids, layout = tok.encode(x, return_layout=True)
    assert layout == Layout("grid", (12, 12))
    assert ids.unique().numel() > 150  # of 288 tokens and 2^10 codes: not a degenerate code
    assert torch.equal(ids, expected["ids"])
    with torch.no_grad():
        raw = tok.decoder(tok.quantizer.ids_to_codes(ids), layout)  # before the [-1, 1] clamp
    assert (raw - expected["reconstruction"]).abs().max() < 1e-4
    assert (tok.decode(ids, layout) - expected["reconstruction"].clamp(-1, 1)).abs().max() < 1e-4
    assert tok.codebook_size == 2 ** ARCHITECTURE["z_channels"]
    assert tok.config["image_size"] == [64, 64]  # 16x16 tokens at factor 4, as the published tokenizers
    meta = tok.config["metadata"]
    assert meta["weights"] == "ema"
    assert meta["ignored"]["loss (discriminator, perceptual network)"] == 6  # the stub loss: 2 + 2 + 2
    assert meta["ignored"]["EMA copy of the loss"] == 4


def test_the_training_weights_are_used_without_an_ema_copy(tmp_path):
    expected, state = reference_checkpoint()
    training = {k: v for k, v in state.items() if not k.startswith("model_ema.")}
    tok = read_open_magvit2(training, tmp_path / "no_ema.ckpt")
    assert tok.config["metadata"]["weights"] == "training"
    assert not torch.equal(tok.encode(fixture_input()), expected["ids"])  # the reference decoded with EMA weights
    ema = {k[len("model_ema."):]: v for k, v in state.items() if k.startswith("model_ema.")}
    with_ema = read_open_magvit2(state, tmp_path / "x.ckpt")
    assert torch.equal(with_ema.state_dict()["encoder.conv_in.weight"], ema["encoderconv_inweight"])
    assert torch.equal(read_open_magvit2(state, tmp_path / "x.ckpt", ema=False).state_dict()["encoder.conv_in.weight"],
                       state["encoder.conv_in.weight"])


def test_lfq_ids_follow_open_magvit2_bit_order(tmp_path):
    _, state = reference_checkpoint()
    tok = read_open_magvit2(state, tmp_path / "x.ckpt")
    codes = tok.quantizer.ids_to_codes(torch.tensor([[1, 2, 2 ** 9 + 3]]))
    assert codes[0, 0].tolist() == [1.0] + [-1.0] * 9  # id 1: the first channel is the least significant bit
    assert codes[0, 1].tolist() == [-1.0, 1.0] + [-1.0] * 8
    assert codes[0, 2].tolist() == [1.0, 1.0] + [-1.0] * 7 + [1.0]


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path):
    _, state = reference_checkpoint()
    damaged = dict(state)
    del damaged["decoder.conv_out.bias"], damaged["model_ema.decoderconv_outbias"]
    torch.save({"state_dict": damaged}, tmp_path / "bad.ckpt")
    with pytest.raises(ConvertError, match="missing: decoder.conv_out.bias"):
        convert("open_magvit2", tmp_path / "bad.ckpt")
    partial_ema = dict(state)
    del partial_ema["model_ema.decoderconv_outbias"]
    with pytest.raises(ConvertError, match="the EMA copy lacks 1 .*model_ema.decoderconv_outbias"):
        read_open_magvit2(partial_ema, tmp_path / "partial.ckpt")
    extra = {**state, "quantize.embedding.weight": torch.zeros(4, 2)}
    with pytest.raises(ConvertError, match=r"neither the model.s \(encoder, decoder\).*quantize.embedding.weight"):
        read_open_magvit2(extra, tmp_path / "extra.ckpt")
    torch.save({"optimizer": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ConvertError, match="not an Open-MAGVIT2 checkpoint"):
        convert("open_magvit2", tmp_path / "other.ckpt")
    video = {**state, "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3, 3)}
    with pytest.raises(ConvertError, match="video tokenizer"):
        read_open_magvit2(video, tmp_path / "video.ckpt")


def test_a_llamagen_checkpoint_is_refused(tmp_path):
    from tests.fixtures.make_llamagen import FIXTURE as LLAMAGEN
    from tests.fixtures.make_llamagen import reference_state as llamagen_state

    with safe_open(str(LLAMAGEN), framework="pt") as f:
        shapes = json.loads(f.metadata()["shapes"])
    torch.save({"model": llamagen_state(shapes)}, tmp_path / "vq_ds16_c2i.pt")
    with pytest.raises(ConvertError, match="not an Open-MAGVIT2 checkpoint"):
        convert("open_magvit2", tmp_path / "vq_ds16_c2i.pt")
    torch.save(llamagen_state(shapes), tmp_path / "bare.pt")
    with pytest.raises(ConvertError, match="not an Open-MAGVIT2 image tokenizer state dict"):
        convert("open_magvit2", tmp_path / "bare.pt")


def test_a_checkpoint_holding_other_objects_is_refused_with_what_it_holds(tmp_path):
    from pathlib import PurePosixPath

    _, state = reference_checkpoint()
    torch.save({"state_dict": state, "hyper_parameters": {"path": PurePosixPath("/data")}}, tmp_path / "objects.ckpt")
    with pytest.raises(ConvertError, match="pathlib.PurePosixPath"):
        convert("open_magvit2", tmp_path / "objects.ckpt")


def test_two_gan_steps_from_the_converted_tokenizer(tmp_path, vgg16_random_weights, caplog):
    from tests.finetuning import moved_from, two_steps

    _, state = reference_checkpoint()
    start = read_open_magvit2(state, tmp_path / "x.ckpt")
    start.save_pretrained(tmp_path / "converted")
    with caplog.at_level("INFO"):
        _, tuned = two_steps(tmp_path / "converted", tmp_path / "run", "experiment=open_magvit2_tiny",
                             "data.image_size=[64,64]", f"loss.perceptual.vgg_weights={vgg16_random_weights}")
    assert f"from {tmp_path / 'converted'}; fresh: adversarial (" in caplog.text
    assert tuned.config["quantizer"] == start.config["quantizer"]
    moved_from(start, tuned)


def test_a_single_token_grid_is_refused(tmp_path):
    _, state = reference_checkpoint()
    tok = read_open_magvit2(state, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="at least 2 tokens"):
        tok.decode(torch.zeros(1, 1, dtype=torch.long), Layout("grid", (1, 1)))
    assert tok.decode(torch.zeros(1, 2, dtype=torch.long), Layout("grid", (1, 2))).shape == (1, 3, 4, 8)
