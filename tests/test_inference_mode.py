"""``Tokenizer.encode`` / ``decode`` never change the model, whatever mode the caller left it in."""

from __future__ import annotations

import pytest
import torch

from discotok import Tokenizer
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config


def snapshot(tok: Tokenizer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tok.state_dict().items()}


@pytest.mark.parametrize("quantizer", sorted(TINY_QUANTIZERS))
def test_encode_in_training_mode_changes_nothing(quantizer: str, photo_batch: torch.Tensor) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config(quantizer))
    assert tok.training  # from_config returns a model in training mode
    before = snapshot(tok)
    first, second = tok.encode(photo_batch[:4]), tok.encode(photo_batch[:4])
    assert torch.equal(first, second), "two encodings of the same images differ"
    if tok.quantizer.depth:
        assert first.shape[-1] == tok.quantizer.depth, f"ids of depth {first.shape[-1]}, not the full depth"
    after = tok.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"encode changed {changed}"
    assert tok.training and all(m.training for m in tok.modules()), "encode left the model out of training mode"


def test_decode_and_mixed_modes_are_restored(photo_batch: torch.Tensor) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("rvq"))
    tok.encoder.eval()  # a caller's mixed modes come back exactly as they were
    modes = {name: m.training for name, m in tok.named_modules()}
    before = snapshot(tok)
    ids = tok.encode(photo_batch[:2])
    x_hat = tok.decode(ids)
    assert torch.equal(x_hat, tok.decode(ids))
    assert {name: m.training for name, m in tok.named_modules()} == modes
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())
    assert torch.equal(tok.encode_latents(photo_batch[:2]), tok.eval().encode_latents(photo_batch[:2]))


def test_mode_is_restored_after_an_error(photo_batch: torch.Tensor) -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq"))
    with pytest.raises(ValueError):
        tok.decode(torch.full((1, 16), 10**6))
    with pytest.raises(ValueError):
        tok.encode(photo_batch[:1, :2])
    assert all(m.training for m in tok.modules())
