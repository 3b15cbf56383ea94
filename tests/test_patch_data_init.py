"""The ``patch`` encoder's and decoder's data-driven start (``data_init``): fitted once, on the first training
batch, to the principal components of its cells and the least-squares decoder of its tokens."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from discotok.tokenizers import Tokenizer
from tests.conftest import tiny_tokenizer_config


def data_init_tokenizer(quantizer: str = "fsq") -> Tokenizer:
    config = tiny_tokenizer_config(quantizer, encoder="patch")
    config["encoder"]["data_init"] = config["decoder"]["data_init"] = True
    return Tokenizer.from_config(config)


def cells(x: torch.Tensor) -> torch.Tensor:
    return rearrange(torch.nn.functional.pixel_unshuffle(x, 8), "b c h w -> (b h w) c")


def test_encoder_starts_at_the_whitened_principal_components(photo_batch):
    torch.manual_seed(0)
    tok = data_init_tokenizer().train()
    enc = tok.encoder
    tok(photo_batch)
    c = cells(photo_batch)
    k = enc.linear.out_channels
    _, _, v = torch.linalg.svd(c - c.mean(0), full_matrices=False)
    w = enc.linear.weight.detach().reshape(k, -1)
    cosines = torch.nn.functional.cosine_similarity(w, v[:k], dim=1).abs()
    assert torch.allclose(cosines, torch.ones(k), atol=1e-4), cosines  # the top k directions, in order
    out = c @ w.T + enc.linear.bias.detach()
    assert torch.allclose(out.mean(0), torch.zeros(k), atol=1e-4)
    assert torch.allclose(out.std(0), torch.full((k,), enc.init_scale), atol=1e-4)  # whitened, then scaled
    assert bool(enc.net[-1].weight.eq(0).all())  # the non-linear branch starts silent
    with torch.no_grad():
        z = tok.encoder(photo_batch).z
    assert torch.allclose(rearrange(z, "b n d -> (b n) d"), out, atol=1e-4)  # so the encoder is the PCA code


def test_decoder_starts_at_least_squares_and_only_once(photo_batch):
    torch.manual_seed(0)
    tok = data_init_tokenizer().train()
    out = tok(photo_batch)
    z = rearrange(out.quantized.z_q.detach(), "b n d -> (b n) d")
    a = torch.cat([z, torch.ones(len(z), 1)], 1)
    target = cells(photo_batch)
    best = (a @ torch.linalg.lstsq(a, target).solution - target).pow(2).mean()
    dec = tok.decoder
    got = torch.cat([dec.linear.weight.detach().flatten(1).T, dec.linear.bias.detach()[None]])
    fitted, mean_only = (a @ got - target).pow(2).mean(), (target - target.mean(0)).pow(2).mean()
    assert fitted <= best * 1.01 and fitted < 0.9 * mean_only, (float(fitted), float(best), float(mean_only))
    assert bool(dec.net[-2].weight.eq(0).all())
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    tok(-photo_batch)  # later batches, and eval forwards, refit nothing
    tok.eval()(photo_batch.flip(0))
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_an_untrained_tokenizer_in_eval_mode_keeps_its_random_start(photo_batch):
    torch.manual_seed(0)
    tok = data_init_tokenizer().eval()
    weight = tok.encoder.linear.weight.detach().clone()
    tok(photo_batch)
    assert torch.equal(weight, tok.encoder.linear.weight) and not bool(tok.encoder.initted)


def test_a_saved_started_tokenizer_is_not_refitted_when_fine_tuned(photo_batch, tmp_path):
    torch.manual_seed(0)
    tok = data_init_tokenizer().train()
    tok(photo_batch)
    tok.save_pretrained(tmp_path)
    loaded = Tokenizer.from_pretrained(tmp_path).train()
    assert bool(loaded.encoder.initted) and bool(loaded.decoder.initted)
    weight = loaded.decoder.linear.weight.detach().clone()
    loaded(-photo_batch)
    assert torch.equal(weight, loaded.decoder.linear.weight)


def test_off_by_default_the_weights_are_unchanged():
    torch.manual_seed(0)
    names = set(Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="patch")).state_dict())
    assert not any("linear" in n or "initted" in n for n in names)


def test_init_scale_must_be_positive():
    config = tiny_tokenizer_config("fsq", encoder="patch")
    config["encoder"].update(data_init=True, init_scale=0.0)
    with pytest.raises(ValueError, match="init_scale"):
        Tokenizer.from_config(config)
