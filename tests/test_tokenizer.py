"""The Tokenizer object: encode/decode, save/load round trip, and refusing unsafe files."""

from __future__ import annotations

import json

import pytest
import torch

from discotok import Layout, Tokenizer, TokenizerLoadError
from discotok.registry import ConfigError
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config


@pytest.mark.parametrize("quantizer", sorted(TINY_QUANTIZERS))
def test_save_load_gives_identical_ids(quantizer, tmp_path, photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config(quantizer))
    tok.train()
    tok(photo_batch)  # one training-mode pass: k-means init / EMA buffers change
    tok.eval()
    ids = tok.encode(photo_batch)
    tok.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert not loaded.training
    assert torch.equal(loaded.encode(photo_batch), ids)
    assert torch.allclose(loaded.decode(ids), tok.decode(ids), atol=1e-6)


@pytest.mark.parametrize("encoder", ["grid", "magvit2", "patch"])  # all 4x4 tokens at 32x32
def test_encode_decode_shapes_and_range(encoder, photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder=encoder)).eval()
    ids, layout = tok.encode(photo_batch, return_layout=True)
    assert ids.dtype == torch.int64 and ids.shape == (8, 16)
    assert layout == Layout("grid", (4, 4)) and tok.modality.num_tokens == 16
    x_hat = tok.decode(ids)
    assert x_hat.shape == photo_batch.shape and x_hat.min() >= -1 and x_hat.max() <= 1
    assert tok.bits_per_token == pytest.approx(3 * torch.log2(torch.tensor(5.0)).item())


@pytest.mark.parametrize("encoder", ["grid", "magvit2", "patch"])  # all 4x4 tokens at 32x32
def test_decode_rejects_bad_ids(encoder):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder=encoder)).eval()
    with pytest.raises(ValueError, match=r"\[0, 124\]"):
        tok.decode(torch.full((1, 16), 125))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        tok.decode(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="layout"):
        tok.decode(torch.zeros(1, 15, dtype=torch.long))


@pytest.mark.parametrize("encoder", ["grid", "magvit2", "patch"])  # all 4x4 tokens at 32x32
def test_encoder_rejects_bad_images(encoder):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder=encoder)).eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tok.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 8"):
        tok.encode(torch.zeros(1, 3, 30, 32))


def write_dir(tmp_path, config) -> str:
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq"))
    path = tok.save_pretrained(tmp_path / "tok")
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["quantizer"].update({"_target_": "os.system"}), "_target_"),
        (lambda c: c.update({"_target_": "builtins.exec"}), "_target_"),
        (lambda c: c["encoder"].update({"name": "os.system"}), "unknown encoder 'os.system'"),
        (lambda c: c["decoder"].update({"name": "evil"}), "unknown decoder 'evil'"),
        (lambda c: c["quantizer"].update({"levels": {"__class__": 1}}), "not allowed"),
        (lambda c: c.update({"code": "import os"}), "unknown key"),
        (lambda c: c["quantizer"].update({"callback": "print"}), "unknown argument"),
    ],
)
def test_crafted_config_is_refused(tmp_path, monkeypatch, mutate, message):
    called = []
    monkeypatch.setattr("os.system", lambda *a: called.append(a))
    config = tiny_tokenizer_config("fsq")
    mutate(config)
    path = write_dir(tmp_path, config)
    with pytest.raises(TokenizerLoadError, match=message):
        Tokenizer.from_pretrained(path)
    assert not called


def test_missing_or_incomplete_directory(tmp_path):
    with pytest.raises(TokenizerLoadError, match="does not exist"):
        Tokenizer.from_pretrained(tmp_path / "nope")
    path = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path / "tok")
    (path / "model.safetensors").unlink()
    with pytest.raises(TokenizerLoadError, match="model.safetensors is missing"):
        Tokenizer.from_pretrained(path)


def test_weights_that_do_not_match_are_refused(tmp_path):
    small = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path / "a")
    other = tiny_tokenizer_config("fsq")
    other["encoder"]["channels"] = 16
    other["decoder"]["channels"] = 16
    (small / "config.json").write_text(json.dumps(other))
    with pytest.raises(TokenizerLoadError, match="does not hold this tokenizer's weights"):
        Tokenizer.from_pretrained(small)
    (small / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(TokenizerLoadError):
        Tokenizer.from_pretrained(small)


def test_invalid_json_is_refused(tmp_path):
    path = Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(tmp_path / "tok")
    (path / "config.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="not valid JSON"):
        Tokenizer.from_pretrained(path)


def test_registry_refuses_unknown_names_directly():
    with pytest.raises(ConfigError, match="registered quantizers"):
        Tokenizer.from_config({**tiny_tokenizer_config(), "quantizer": {"name": "nope", "dim": 8}})
