"""The ``patch`` encoder's and decoder's data-driven start (``data_init``): fitted once, on the first training
batch, to the principal components of its cells and the least-squares decoder of its tokens."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from discotok.nn.data_init import least_squares_init_
from discotok.tokenizers import Tokenizer
from tests.conftest import tiny_tokenizer_config


def data_init_tokenizer(quantizer: str = "fsq", linear_kernel: int = 1) -> Tokenizer:
    config = tiny_tokenizer_config(quantizer, encoder="patch")
    config["encoder"]["data_init"] = config["decoder"]["data_init"] = True
    config["decoder"]["linear_kernel"] = linear_kernel
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


@pytest.mark.parametrize("kernel", [1, 3])
def test_decoder_starts_at_least_squares_and_only_once(photo_batch, kernel):
    """The decoder's output right after the start is the least-squares fit from each token (and its
    neighbours, edges replicated, for a 3x3 path) to its cell: the fit and the convolution agree on layout."""
    torch.manual_seed(0)
    tok = data_init_tokenizer(linear_kernel=kernel).train()
    out = tok(photo_batch)
    grid = rearrange(out.quantized.z_q.detach(), "b (h w) d -> b d h w", h=4)
    pad = kernel // 2
    near = torch.nn.functional.unfold(torch.nn.functional.pad(grid, [pad] * 4, mode="replicate"), kernel)
    z = rearrange(near, "b f n -> (b n) f")
    a = torch.cat([z, torch.ones(len(z), 1)], 1)
    target = cells(photo_batch)
    best = (a @ torch.linalg.lstsq(a, target).solution - target).pow(2).mean()
    with torch.no_grad():
        fitted = (cells(tok.decode(out.ids)) - target).pow(2).mean()  # the non-linear branch is silent
    mean_only = (target - target.mean(0)).pow(2).mean()
    assert fitted <= best * 1.01 and fitted < 0.9 * mean_only, (float(fitted), float(best), float(mean_only))
    assert bool(tok.decoder.net[-2].weight.eq(0).all())
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    tok(-photo_batch)  # later batches, and eval forwards, refit nothing
    tok.eval()(photo_batch.flip(0))
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_linear_kernel_must_be_odd():
    config = tiny_tokenizer_config("fsq", encoder="patch")
    config["encoder"]["data_init"] = config["decoder"]["data_init"] = True
    config["decoder"]["linear_kernel"] = 2
    with pytest.raises(ValueError, match="linear_kernel"):
        Tokenizer.from_config(config)


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



@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_the_least_squares_start_does_not_depend_on_the_tokens_units(scale):
    """The ridge scales with the Gram matrix, so tokens in other units get the same decoder (a fixed ridge
    of 1e-3 made the 3x3 start of the default's shape, 145 inputs spanning 5 directions, amplify moves off the
    batch's tokens: the 3,000-step default with `encoder.data_init=true decoder.linear_kernel=3` diverged, loss
    5.4 at step 19; with a tokens' scale of 1e-3 it would fit little but the mean)."""
    torch.manual_seed(0)
    codes = torch.randn(512, 4)
    inputs = codes @ torch.randn(4, 16) + 0.5  # 16 token channels spanning 4 directions, as FSQ's projection
    targets = codes @ torch.randn(4, 12) + 0.1 * torch.randn(512, 12)
    fits = []
    for x in (inputs, inputs * scale):
        layer = torch.nn.Conv2d(16, 12, 1)
        least_squares_init_(layer, x, targets)
        fits.append(x @ layer.weight.detach().flatten(1).T + layer.bias.detach())
    assert torch.allclose(fits[0], fits[1], atol=1e-3), float((fits[0] - fits[1]).abs().max())
    assert float((fits[0] - targets).pow(2).mean()) < 0.02  # and the fit is the signal (noise variance 0.01)
