"""1-D tokenizers (titok, flexible): prefixes, causal prefix encoding, nested dropout, sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from discotok import Layout, Tokenizer
from discotok.extraction import ExtractError, decode_ids, extract
from discotok.registry import ENCODERS
from discotok.encoders.flexible import prefix_causal_mask
from tests.conftest import LATENT, TINY_NUM_TOKENS, tiny_tokenizer_config

N = TINY_NUM_TOKENS


def tiny(encoder: str = "flexible", quantizer: str = "fsq", **kwargs) -> Tokenizer:
    return Tokenizer.from_config(tiny_tokenizer_config(quantizer, encoder=encoder, **kwargs)).eval()


def flexible_encoder(**kwargs):
    vit = {"image_size": [32, 32], "patch_size": 8, "width": 32, "depth": 1, "heads": 2}
    return ENCODERS.build({"name": "flexible", "latent_dim": LATENT, "num_tokens": N, **vit, **kwargs})


@pytest.mark.parametrize("encoder", ["titok", "flexible"])
def test_any_prefix_decodes_to_the_image_shape(encoder, photo_batch):
    tok = tiny(encoder)
    ids, layout = tok.encode(photo_batch, return_layout=True)
    assert ids.shape == (8, N) and layout == Layout("sequence", (N,)) and tok.modality.num_tokens == N
    assert tok.modality.default_layout() == layout
    for k in (1, 2, 5, N):
        x_hat = tok.decode(ids[:, :k])
        assert x_hat.shape == photo_batch.shape and x_hat.min() >= -1 and x_hat.max() <= 1


@pytest.mark.parametrize("quantizer", ["fsq", "vq", "rvq"])
def test_causal_prefix_encoding_equals_the_first_ids(quantizer, photo_batch):
    tok = tiny("flexible", quantizer, causal=True)
    full = tok.encode(photo_batch)
    for k in range(1, N + 1):
        assert torch.equal(tok.encode(photo_batch, num_tokens=k), full[:, :k]), k


def test_causal_encoder_running_k_latents_equals_the_slice(photo_batch):
    enc = flexible_encoder(causal=True, depth=2).eval()
    full = enc(photo_batch).z
    for k in (1, 3, 8, N):
        prefix = enc(photo_batch, num_tokens=k)
        assert prefix.z.shape == (8, k, LATENT)
        assert torch.allclose(prefix.z, full[:, :k], atol=1e-5)


def test_non_causal_prefix_is_the_slice_of_the_full_encoding(photo_batch):
    tok = tiny("titok")
    assert torch.equal(tok.encode(photo_batch, num_tokens=4), tok.encode(photo_batch)[:, :4])


def test_prefix_causal_mask():
    mask = prefix_causal_mask(num_patches=3, num_latents=2)
    expected = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("encoder", ["titok", "flexible"])
def test_positions_resize_to_a_new_image_size(encoder, photo_batch):
    tok = tiny(encoder)
    x = torch.nn.functional.interpolate(photo_batch[:2], size=(48, 48), mode="bilinear")
    ids = tok.encode(x)
    assert ids.shape == (2, N)
    assert tok.decode(ids, size=(48, 48)).shape == (2, 3, 48, 48)
    assert tok.decode(ids).shape == (2, 3, 32, 32)
    assert tok(x).x_hat.shape == x.shape


@pytest.mark.parametrize("encoder, quantizer", [("titok", "vq"), ("flexible", "rvq")])
def test_save_load_gives_identical_ids(encoder, quantizer, photo_batch, tmp_path):
    tok = tiny(encoder, quantizer, **({"causal": True} if encoder == "flexible" else {})).train()
    tok(photo_batch)
    tok.eval()
    ids = tok.encode(photo_batch)
    loaded = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert torch.equal(loaded.encode(photo_batch), ids)
    assert torch.equal(loaded.encode(photo_batch, num_tokens=3), ids[:, :3])
    assert torch.allclose(loaded.decode(ids[:, :3]), tok.decode(ids[:, :3]), atol=1e-6)
    if encoder == "flexible":
        assert int(loaded.encoder.steps) == 1


def test_clear_errors_for_bad_sizes_and_token_counts(photo_batch):
    tok = tiny("flexible", causal=True)
    with pytest.raises(ValueError, match="multiples of 8"):
        tok.encode(torch.zeros(1, 3, 36, 32))
    for k in (0, N + 1):
        with pytest.raises(ValueError, match=rf"num_tokens must lie in 1\.\.{N}"):
            tok.encode(photo_batch, num_tokens=k)
    with pytest.raises(ValueError, match=rf"1\.\.{N}"):
        tok.decode(torch.zeros(1, N + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        tok.decode(torch.zeros(1, 4, dtype=torch.long), size=(30, 32))
    grid = Tokenizer.from_config(tiny_tokenizer_config("fsq")).eval()
    with pytest.raises(ValueError, match="1-D"):
        grid.encode(photo_batch, num_tokens=4)


def test_nested_dropout_draws_are_seeded_and_stay_in_the_support():
    a, b, c = flexible_encoder(seed=7), flexible_encoder(seed=7), flexible_encoder(seed=8)
    draws = torch.stack([a.draw_keep(64, step) for step in range(20)])
    assert torch.equal(draws, torch.stack([b.draw_keep(64, step) for step in range(20)]))
    assert not torch.equal(draws, torch.stack([c.draw_keep(64, step) for step in range(20)]))
    assert set(draws.unique().tolist()) == set(range(1, N + 1))
    pow2 = flexible_encoder(k_distribution="pow2")
    assert set(torch.cat([pow2.draw_keep(64, s) for s in range(5)]).unique().tolist()) == {1, 2, 4, 8, 16}
    with pytest.raises(ValueError, match="k_distribution"):
        flexible_encoder(k_distribution="zipf")


def test_training_forward_draws_keep_from_the_step_counter(photo_batch):
    a, b = flexible_encoder(seed=3).train(), flexible_encoder(seed=3).train()
    first = a(photo_batch).keep
    assert torch.equal(first, b(photo_batch).keep) and torch.equal(first, a.draw_keep(8, 0))
    assert torch.equal(a(photo_batch).keep, a.draw_keep(8, 1)) and int(a.steps) == 2
    assert a.eval()(photo_batch).keep is None and int(a.steps) == 2


def test_decoder_masks_positions_at_or_past_keep(photo_batch):
    tok = tiny("flexible").train()
    out = tok(photo_batch)
    tok.eval()
    z_q, keep = out.quantized.z_q.detach(), torch.tensor([1, 3, 16, 2, 5, 8, 4, 16])
    masked = tok.decoder(z_q, out.layout, keep=keep)
    for b, k in enumerate(keep.tolist()):
        alone = tok.decoder(z_q[b : b + 1, :k], out.layout)
        assert torch.allclose(masked[b : b + 1], alone, atol=1e-5)


def test_folder_round_trip_keeps_the_encoded_size_and_takes_prefixes(photo_batch, tmp_path):
    tok = tiny("flexible", causal=True)
    (tmp_path / "in").mkdir()
    for i, x in enumerate(photo_batch[:2]):
        Image.fromarray(x.add(1).mul(127.5).byte().permute(1, 2, 0).numpy()).save(tmp_path / "in" / f"{i}.png")
    extract(tok, tmp_path / "in", tmp_path / "ids", image_size=48, progress=False, workers=0)
    written = decode_ids(tok, tmp_path / "ids", tmp_path / "out", progress=False)
    assert [Image.open(p).size for p in written] == [(48, 48), (48, 48)]
    ids = np.load(tmp_path / "ids" / "ids-00000.npy")
    np.save(tmp_path / "prefix.npy", ids[:, :3])
    assert len(decode_ids(tok, tmp_path / "prefix.npy", tmp_path / "out3", progress=False)) == 2
    np.save(tmp_path / "long.npy", np.concatenate([ids, ids], axis=1))
    with pytest.raises(ExtractError, match=rf"1\.\.{N}"):
        decode_ids(tok, tmp_path / "long.npy", tmp_path / "out_long", progress=False)
