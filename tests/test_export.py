"""Export helpers round-trip exactly and refuse malformed input."""

from __future__ import annotations

import pytest
import torch

from discotok import Tokenizer
from discotok.export import LLMVocab, delay, flatten, from_bits, to_bits, undelay, unflatten
from tests.conftest import tiny_tokenizer_config


def test_llm_vocab_round_trip_and_layout() -> None:
    vocab = LLMVocab.after(text_vocab_size=32000, codebook_size=1024)
    assert (vocab.offset, vocab.begin_id, vocab.end_id, vocab.vocab_size) == (32000, 33024, 33025, 33026)
    ids = torch.randint(0, 1024, (3, 16))
    tokens = vocab.encode(ids)
    assert tokens.shape == (3, 18) and (tokens[:, 0] == 33024).all() and (tokens[:, -1] == 33025).all()
    assert tokens[:, 1:-1].min() >= 32000 and tokens[:, 1:-1].max() < 33024
    assert torch.equal(vocab.decode(tokens), ids)
    plain = LLMVocab(offset=5, codebook_size=8)
    assert torch.equal(plain.decode(plain.encode(ids % 8)), ids % 8) and plain.vocab_size == 13


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.__setitem__((0, 0), 7), "start with the begin token"),
        (lambda t: t.__setitem__((1, -1), 7), "end with the end token"),
        (lambda t: t.__setitem__((2, 3), 5), r"code tokens must lie in \[100, 163\]; position \[2, 2\]"),
    ],
    ids=["begin", "end", "range"],
)
def test_llm_vocab_decode_validates(mutate, message: str) -> None:
    vocab = LLMVocab.after(100, 64)
    tokens = vocab.encode(torch.randint(0, 64, (3, 6)))
    mutate(tokens)
    with pytest.raises(ValueError, match=message):
        vocab.decode(tokens)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 63\]"):
        vocab.encode(torch.full((1, 4), 64))
    with pytest.raises(ValueError, match="inside the code range"):
        LLMVocab(offset=10, codebook_size=8, begin_id=12)


@pytest.mark.parametrize("codebook_size", [None, 32])
def test_flatten_round_trip(codebook_size: int | None) -> None:
    ids = torch.randint(0, 32, (2, 5, 3))
    tokens = flatten(ids, codebook_size)
    assert tokens.shape == (2, 15)
    assert torch.equal(tokens[:, :3] % 32, ids[:, 0])  # token-major: all levels of token 0 first
    if codebook_size:
        assert tokens[:, 1::3].min() >= 32 and tokens[:, 2::3].min() >= 64
    assert torch.equal(unflatten(tokens, 3, codebook_size), ids)


def test_unflatten_validates() -> None:
    with pytest.raises(ValueError, match="do not split"):
        unflatten(torch.zeros(1, 7, dtype=torch.long), 3)
    tokens = flatten(torch.randint(0, 32, (1, 4, 2)), 32)
    tokens[0, 1] = 3  # a level-0 id where level 1 belongs
    with pytest.raises(ValueError, match=r"level 1 tokens must lie in \[32, 63\]"):
        unflatten(tokens, 2, 32)


def test_delay_pattern_round_trip_and_shape() -> None:
    ids = torch.randint(0, 16, (2, 6, 4))
    steps = delay(ids, pad_id=16)
    assert steps.shape == (2, 9, 4)
    assert torch.equal(steps[:, 2, :3], torch.stack([ids[:, 2, 0], ids[:, 1, 1], ids[:, 0, 2]], dim=-1))
    assert (steps[:, 0, 1:] == 16).all() and (steps[:, -1, :3] == 16).all()
    assert torch.equal(undelay(steps, pad_id=16), ids)
    shifted = torch.roll(steps, 1, dims=1)
    with pytest.raises(ValueError, match="must hold pad_id 16"):
        undelay(shifted, pad_id=16)


def test_bits_round_trip_with_the_binary_quantizer() -> None:
    tok = Tokenizer.from_config(tiny_tokenizer_config("binary")).eval()
    ids = tok.encode(torch.rand(2, 3, 32, 32) * 2 - 1)
    bits = to_bits(ids, tok.quantizer.bits)
    assert bits.shape == (2, 16, 8) and bits.dtype == torch.uint8
    # The bits are the signs the quantizer's codes carry.
    assert torch.equal(bits.bool(), tok.quantizer.lookup(ids) > 0)
    assert torch.equal(from_bits(bits), ids)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 255\]"):
        to_bits(torch.tensor([256]), 8)
    with pytest.raises(ValueError, match="only 0 and 1"):
        from_bits(torch.tensor([[0, 2, 1]]))
