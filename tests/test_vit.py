"""The ViT pieces and the ``vit`` grid tokenizer: shapes, masks, resized positions, errors."""

from __future__ import annotations

import pytest
import torch

from discotok import Layout, Tokenizer
from discotok.nn.vit import GridPosEmbed, PatchHead, Transformer
from tests.conftest import tiny_tokenizer_config


def test_vit_tokenizer_encodes_a_patch_grid(photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="vit")).eval()
    ids, layout = tok.encode(photo_batch, return_layout=True)
    assert ids.shape == (8, 16) and layout == Layout("grid", (4, 4)) and tok.modality.num_tokens == 16
    x_hat = tok.decode(ids)
    assert x_hat.shape == photo_batch.shape and x_hat.min() >= -1 and x_hat.max() <= 1


def test_vit_positions_resize_to_a_new_image_size(photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="vit")).eval()
    x = torch.nn.functional.interpolate(photo_batch[:2], size=(48, 64), mode="bilinear")
    ids, layout = tok.encode(x, return_layout=True)
    assert ids.shape == (2, 48) and layout == Layout("grid", (6, 8))
    assert tok.decode(ids, layout).shape == (2, 3, 48, 64)
    assert tok(x).x_hat.shape == x.shape


def test_vit_rejects_an_image_size_not_divisible_by_the_patch():
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="vit")).eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        tok.encode(torch.zeros(1, 3, 36, 32))


def test_vit_save_load_gives_identical_ids(photo_batch, tmp_path):
    tok = Tokenizer.from_config(tiny_tokenizer_config("vq", encoder="vit")).train()
    tok(photo_batch)
    tok.eval()
    ids = tok.encode(photo_batch)
    loaded = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert torch.equal(loaded.encode(photo_batch), ids)


def test_pos_embed_keeps_the_base_grid_and_resamples_others():
    pos = GridPosEmbed((4, 4), 8)
    assert pos((4, 4)) is pos.weight
    resized = pos((6, 2))
    assert resized.shape == (1, 12, 8)
    resized.sum().backward()
    assert pos.weight.grad is not None


def test_transformer_honours_a_boolean_attention_mask():
    net = Transformer(16, depth=2, heads=2).eval()
    x = torch.randn(2, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    y = net(x, attn_mask=causal)
    x2 = x.clone()
    x2[:, 3:] = torch.randn(2, 2, 16)
    assert torch.allclose(net(x2, attn_mask=causal)[:, :3], y[:, :3], atol=1e-6)
    assert not torch.allclose(net(x2)[:, :3], net(x)[:, :3], atol=1e-4)


def test_patch_head_lays_patches_out_row_major():
    head = PatchHead(4, out_channels=3, patch_size=2)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.weight[:, 0] = 1.0
        head.proj.bias.zero_()
    tokens = torch.zeros(1, 6, 4)
    tokens[0, :, 0] = torch.arange(6.0)
    out = head(tokens, (2, 3))
    assert out.shape == (1, 3, 4, 6)
    expected = torch.arange(6.0).reshape(2, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out[0], expected.expand(3, -1, -1))
