"""The rectified-flow decoder: seeded sampling, classifier-free guidance, prefixes, its own training loss."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from discotok import Tokenizer

from discotok.layout import Layout
from discotok.train.module import TokenizerModule
from tests.conftest import tiny_tokenizer_config

N = 8


def flow_config(**decoder) -> dict:
    config = tiny_tokenizer_config("fsq", encoder="flexible", num_tokens=N, causal=True, k_distribution="pow2")
    config["decoder"] = {**config["decoder"], "name": "flow", "timesteps": 4, **decoder}
    return config


@pytest.fixture(scope="module")
def flow_tok() -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer.from_config(flow_config()).eval()


def test_decode_is_deterministic_for_a_seed_and_changes_with_it(flow_tok, photo_batch):
    ids = flow_tok.encode(photo_batch[:4])
    first = flow_tok.decode(ids, seed=3)
    assert torch.equal(first, flow_tok.decode(ids, seed=3))
    assert (first - flow_tok.decode(ids, seed=4)).abs().mean() > 1e-3
    assert torch.equal(flow_tok.decode(ids), flow_tok.decode(ids, seed=0))  # the decoder's default seed
    assert not torch.equal(flow_tok.decode(ids, timesteps=4), flow_tok.decode(ids, timesteps=2))
    assert first.shape == photo_batch[:4].shape and first.abs().max() <= 1


def test_guidance_scale_one_is_exactly_the_conditional_prediction(flow_tok, photo_batch):
    dec = flow_tok.decoder
    z_q = flow_tok.quantizer.ids_to_codes(flow_tok.encode(photo_batch[:3]))
    cond = dec.condition(z_q, Layout("sequence", (N,)))
    x_t, t = torch.randn(3, 3, 32, 32), torch.tensor([0.9, 0.5, 0.1])
    conditional = dec.velocity(x_t, t, cond)
    assert torch.equal(dec.guided_velocity(x_t, t, cond, 1.0), conditional)
    unconditional = dec.velocity(x_t, t, dec.null_condition(3, cond.dtype))
    guided = dec.guided_velocity(x_t, t, cond, 3.0)
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-5)
    assert (guided - conditional).abs().max() > 1e-4
    ids = flow_tok.encode(photo_batch[:2])
    assert not torch.equal(flow_tok.decode(ids, guidance_scale=1.0), flow_tok.decode(ids, guidance_scale=2.0))


def test_condition_dropout_replaces_every_token_by_the_mask_token(flow_tok, photo_batch):
    dec = flow_tok.decoder
    z_q = flow_tok.quantizer.ids_to_codes(flow_tok.encode(photo_batch[:3]))
    drop = torch.tensor([True, False, True])
    cond = dec.condition(z_q, Layout("sequence", (N,)), drop=drop)
    null = dec.null_condition(3, cond.dtype)
    assert torch.equal(cond[0], null[0]) and torch.equal(cond[2], null[2])
    assert not torch.allclose(cond[1], null[1])


def test_any_prefix_decodes_and_other_sizes(flow_tok, photo_batch):
    ids = flow_tok.encode(photo_batch[:2])
    for k in range(1, N + 1):
        assert flow_tok.decode(ids[:, :k]).shape == (2, 3, 32, 32)
    assert flow_tok.decode(flow_tok.encode(photo_batch[:2], num_tokens=2), size=(48, 40)).shape == (2, 3, 48, 40)
    with pytest.raises(ValueError, match="timesteps"):
        flow_tok.decode(ids, timesteps=0)


def test_training_forward_gives_the_flow_loss_and_gradients_reach_the_encoder(photo_batch):
    tok = Tokenizer.from_config(flow_config()).train()
    assert tok.decoder.generative
    out = tok(photo_batch[:4])
    assert out.decoder_loss is not None and torch.isfinite(out.decoder_loss) and "flow_mse" in out.decoder_parts
    assert out.x_hat.shape == photo_batch[:4].shape  # the one-step estimate x_t - t v
    out.decoder_loss.backward()
    for name, p in tok.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    tok.eval()
    with torch.no_grad():
        sampled = tok(photo_batch[:4])  # eval mode: a sample with the decoder's defaults, and a seeded loss
        again = tok(photo_batch[:4])
    assert torch.equal(sampled.decoder_loss, again.decoder_loss)
    assert torch.allclose(sampled.x_hat.clamp(-1, 1), tok.decode(tok.encode(photo_batch[:4])), atol=1e-5)


def test_the_flow_loss_goes_down_when_fitting_a_batch(photo_batch):
    torch.manual_seed(0)
    tok = Tokenizer.from_config(flow_config(condition_dropout=0.0)).train()
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)

    def fixed_loss() -> float:  # the mean over four fixed draws of t, noise
        with torch.no_grad():
            draws = [torch.Generator().manual_seed(s) for s in range(4)]
            return sum(tok.decoder.loss(*encoded(), photo_batch, generator=g).loss.item() for g in draws) / 4

    def encoded():
        enc = tok.encoder(photo_batch, num_tokens=N)
        return tok.quantizer(enc.z).z_q, enc.layout

    before = fixed_loss()
    for _ in range(40):
        loss = tok(photo_batch).decoder_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < 0.9 * before  # about 0.8 for seeds 0, 1, 2


def test_deterministic_decoders_refuse_sampler_arguments(photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="titok")).eval()
    ids = tok.encode(photo_batch[:2])
    for kwargs in ({"timesteps": 5}, {"guidance_scale": 2.0}, {"seed": 1}):
        with pytest.raises(ValueError, match="generative decoders"):
            tok.decode(ids, **kwargs)


def test_module_trains_and_validates_with_samples_and_saves(photo_batch, tmp_path):
    module = TokenizerModule(flow_config(), optim={"lr": 1e-3, "warmup_steps": 1},
                             perturbation={"alpha": 0.5, "beta": 0.5, "delta": 2})
    loader = DataLoader(photo_batch, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.validate(module, loader, verbose=False)[0]
    assert metrics["val/psnr"] > 0 and metrics["val/flow_mse"] > 0 and metrics["val/loss"] == metrics["val/flow_mse"]
    assert module.val_examples[1].shape == (4, 3, 32, 32)
    tok = module.export_tokenizer().eval()
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    ids = tok.encode(photo_batch[:2])
    assert torch.equal(loaded.decode(ids, seed=5, timesteps=3), tok.decode(ids, seed=5, timesteps=3))


def test_decode_command_passes_the_sampler_options(flow_tok, photo_batch, tmp_path, capsys):
    from PIL import Image

    from discotok.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, x in enumerate(photo_batch[:3]):
        pixels = ((x.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        Image.fromarray(pixels).save(photos / f"{i}.png")
    flow_tok.save_pretrained(tmp_path / "tok")
    assert main(["encode", str(tmp_path / "tok"), str(photos), "-o", str(tmp_path / "ids"), "--no-progress"]) == 0

    def decoded(name: str, *options: str) -> list[torch.Tensor]:
        args = ["decode", str(tmp_path / "tok"), str(tmp_path / "ids"), "-o", str(tmp_path / name), "--no-progress"]
        assert main([*args, *options]) == 0
        return [torch.from_numpy(np.asarray(Image.open(p))) for p in sorted((tmp_path / name).glob("*.png"))]

    first, again, other = decoded("a", "--seed", "5"), decoded("b", "--seed", "5"), decoded("c", "--seed", "6")
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, c) for a, c in zip(first, other))
    assert any(not torch.equal(a, b) for a, b in zip(first, decoded("d", "--seed", "5", "--timesteps", "2")))
    capsys.readouterr()
