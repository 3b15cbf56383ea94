"""Training the ``flextok`` tokenizer: the decoder's own rectified-flow loss on the images' VAE latents (the
convention its sampler integrates), condition dropout for guidance, the frozen VAE in both roles, a two-step
fine-tune of the converted fixture (apple/ml-flextok's weights layout, ``tests/fixtures/flextok_small.safetensors``)
and a short from-scratch training of ``experiment=flextok_tiny`` that saves, reloads and decodes."""

from __future__ import annotations

import copy
import json
import re

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from discotok import Tokenizer
from discotok.convert import convert
from discotok.decoders.flow import FlowDraws
from discotok.tokenizers import tokenizer_config
from discotok.train.module import TokenizerModule
from discotok.train.run import config_dir, plain
from tests.fixtures.make_flextok import IMAGE_SIZE, fixture_input
from tests.hf_reference import flushed_one_thread
from tests.test_convert_flextok import checkpoint, reference

VAE = re.compile(r"(encoder\.vae|decoder\.vae|decoder\.vae_encoder|decoder\.post_quant_conv)\..+")


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, denormals flushed: two threads on a busy machine took 160 s for the 40 steps that take 4 s so."""
    with flushed_one_thread():
        yield


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory):
    """The converted fixture, its image size set to the 32x32 its positions cover (the converter says 256, the
    published size), so that ``init_from`` trains it on 32x32 crops."""
    tmp = tmp_path_factory.mktemp("flextok_train")
    config, state, _ = reference()
    convert("flextok", checkpoint(tmp / "hub", config, state), tmp / "tok")
    saved = json.loads((tmp / "tok" / "config.json").read_text())
    for part in (saved, saved["encoder"], saved["decoder"]):
        part["image_size"] = [IMAGE_SIZE, IMAGE_SIZE]
    (tmp / "tok" / "config.json").write_text(json.dumps(saved))
    return tmp / "tok"


@pytest.fixture(scope="module")
def converted(converted_dir) -> Tokenizer:
    return Tokenizer.from_pretrained(converted_dir).eval()


def encoded(tok: Tokenizer, x: torch.Tensor):
    enc = tok.encoder(x, num_tokens=tok.encoder.num_tokens)
    return tok.quantizer(enc.z).z_q, enc.layout


def variant(tok: Tokenizer, **decoder) -> Tokenizer:
    """The tokenizer with other decoder settings (and, for ``freeze_vae``, the encoder's), the same weights."""
    config = copy.deepcopy(tok.config)
    config["decoder"].update(decoder)
    if "freeze_vae" in decoder:
        config["encoder"]["freeze_vae"] = decoder["freeze_vae"]
    out = Tokenizer.from_config(config)
    out.load_state_dict(tok.state_dict(), strict=True)
    return out.eval()


def test_the_converter_fills_both_vae_encoders_and_reads_the_condition_dropout(converted):
    dec, enc = converted.decoder, converted.encoder
    ours = dict(dec.vae_encoder.state_dict())
    assert ours.keys() == enc.vae.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in enc.vae.state_dict().items())
    assert dec.condition_dropout == 0.2 and dec.time_sampling == "logit_normal"  # the fixture config's LearnedNullCond
    x = fixture_input()
    assert torch.equal(dec.target_latents(x), enc.latents(x))


def test_the_loss_is_the_rectified_flow_loss_the_sampler_integrates(converted, monkeypatch):
    dec, x = converted.decoder, fixture_input()
    z_q, layout = encoded(converted, x)
    cond = dec.condition(z_q, layout)
    own = dec.loss(z_q, layout, x, generator=torch.Generator().manual_seed(7))
    # by hand: t logit-normal, then the noise, from the same generator; x_t = (1 - t) x0 + t e; target e - x0
    g = torch.Generator().manual_seed(7)
    latents = converted.encoder.latents(x)
    t = torch.sigmoid(torch.randn(3, generator=g))
    noise = torch.randn(latents.shape, generator=g)
    tt = t[:, None, None, None]
    x_t = (1 - tt) * latents + tt * noise
    with torch.no_grad():
        v = dec.velocity(x_t, t, cond)
        expected = (v - (noise - latents)).square().mean()
        assert torch.allclose(own.loss, expected, rtol=1e-5, atol=0) and own.loss > 0.1
        assert torch.allclose(own.x_hat, dec.decode_latents(x_t - tt * v), atol=1e-5)
        # the true velocity e - x0: one Euler step from x_t over t lands on the latents, the sampler integrates it
        # from the noise at t = 1 to the latents at t = 0, and the loss is zero
        assert torch.allclose(x_t - tt * (noise - latents), latents, atol=1e-5)
        monkeypatch.setattr(dec, "velocity", lambda x_t, t, cond: noise - latents)
        for steps in (1, 3):
            assert torch.allclose(dec.sample_latents(cond, noise, steps, 1.0), latents, atol=1e-5)
        exact = dec.loss(z_q, layout, x, generator=torch.Generator().manual_seed(7))
        assert exact.loss < 1e-10 and torch.allclose(exact.x_hat, dec.decode_latents(latents), atol=1e-5)


@pytest.mark.parametrize("null_condition", ["learned", "learned_token"])
def test_condition_dropout_puts_the_unconditional_input_in_place(converted, null_condition):
    tok = variant(converted, null_condition=null_condition)
    dec, x = tok.decoder, fixture_input().repeat(3, 1, 1, 1)
    z_q, layout = encoded(tok, x)
    cond, latents = dec.condition(z_q, layout), dec.target_latents(x)
    seed = next(s for s in range(100) if 0 < int(FlowDraws.draw(
        latents, "logit_normal", 0.2, torch.Generator().manual_seed(s)).drop.sum()) < 9)
    draws = FlowDraws.draw(latents, "logit_normal", 0.2, torch.Generator().manual_seed(seed))
    x_t = draws.noisy(latents)
    with torch.no_grad():
        rows = [dec.velocity(x_t[i:i + 1], draws.t[i:i + 1],
                             dec.unconditional(cond[i:i + 1]) if draws.drop[i] else cond[i:i + 1]) for i in range(9)]
        expected = draws.velocity_loss(torch.cat(rows), latents)
        dec.train()
        trained = dec.loss(z_q, layout, x, generator=torch.Generator().manual_seed(seed)).loss
        dec.eval()
        none_dropped = dec.loss(z_q, layout, x, generator=torch.Generator().manual_seed(seed)).loss
    assert torch.allclose(trained, expected, rtol=1e-5)
    assert (trained - none_dropped).abs() > 1e-4  # the dropped rows change the loss


def test_gradients_reach_the_transformers_and_not_the_frozen_vae(converted):
    tok = copy.deepcopy(converted).train()
    frozen = [tok.encoder.vae, tok.decoder.vae, tok.decoder.vae_encoder, tok.decoder.post_quant_conv]
    assert not any(m.training for f in frozen for m in f.modules()) and tok.decoder.transformer.training
    out = tok(fixture_input())
    (out.decoder_loss + out.x_hat.square().mean()).backward()  # x_hat: the one-step estimate through the VAE decoder
    for name, p in tok.named_parameters():
        if VAE.fullmatch(name):
            assert not p.requires_grad and p.grad is None, name
    for part in (tok.decoder.transformer, tok.decoder.from_latents, tok.decoder.patch_embed, tok.decoder.head,
                 tok.encoder.transformer, tok.encoder.head):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert tok.decoder.null_token.grad is not None  # in the graph even where no sample dropped its condition (DDP)
    # freeze_vae false: the encoder's VAE and the decoder's VAE decoder train; the flow targets' encoder never does
    free = variant(converted, freeze_vae=False).train()
    out = free(fixture_input())
    (out.decoder_loss + out.x_hat.square().mean()).backward()
    assert free.encoder.vae.training and free.encoder.vae.conv_in.weight.grad.abs().sum() > 0
    assert free.decoder.vae.conv_in.weight.grad.abs().sum() > 0
    assert not free.decoder.vae_encoder.training
    assert all(p.grad is None and not p.requires_grad for p in free.decoder.vae_encoder.parameters())


def test_two_training_steps_from_the_converted_flextok_move_the_flow_not_the_vae(converted_dir, tmp_path):
    from tests.finetuning import moved_from, two_steps

    start = Tokenizer.from_pretrained(converted_dir)
    summary, tuned = two_steps(converted_dir, tmp_path / "run", "experiment=flextok_tiny", "data.image_size=[32,32]",
                               "ema.decay=0.9")
    moved = moved_from(start, tuned)
    assert any(k.startswith("decoder.transformer.") for k in moved), "the flow transformer did not train"
    assert any(k.startswith("encoder.transformer.") for k in moved), "the register encoder did not train"
    vae = [k for k in moved if VAE.fullmatch(k)]
    assert not vae, f"frozen VAE weights moved: {vae[:4]}"
    assert sum(1 for k, _ in start.named_parameters() if VAE.fullmatch(k)) > 20
    assert summary["ema_weights"] is True and summary["val_psnr_db"] > 0  # validation sampled decodes


def test_the_tiny_experiment_trains_from_scratch_saves_reloads_and_decodes(photo_batch, tmp_path):
    torch.manual_seed(0)
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = plain(compose("train", overrides=["experiment=flextok_tiny"]))
    config = tokenizer_config(cfg["encoder"], cfg["quantizer"], cfg["decoder"], [32, 32])
    module = TokenizerModule(config, optim={**cfg["optim"], "lr": 2e-3, "warmup_steps": 5})
    tok = module.tokenizer
    batch = photo_batch[:8]

    def fixed_loss() -> float:  # the mean over four fixed draws of t and noise, all tokens, no condition dropout
        tok.eval()
        with torch.no_grad():
            z_q, layout = encoded(tok, batch)
            draws = [torch.Generator().manual_seed(s) for s in range(4)]
            return sum(tok.decoder.loss(z_q, layout, batch, generator=g).loss.item() for g in draws) / 4

    before = fixed_loss()
    vae_before = {k: v.clone() for k, v in tok.state_dict().items() if VAE.fullmatch(k)}
    trainer = L.Trainer(accelerator="cpu", max_steps=40, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(batch.repeat(40, 1, 1, 1), batch_size=8))  # one epoch
    after = fixed_loss()
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in tok.parameters() if p.requires_grad}
    assert len(optimized) < len(list(tok.parameters()))  # the frozen VAE is not in the optimizer
    assert after < 0.6 * before, (before, after)  # measured 1.09 -> 0.42, 1.07 -> 0.39, 1.08 -> 0.37 (seeds 0, 1, 2)
    assert all(torch.equal(tok.state_dict()[k], v) for k, v in vae_before.items())
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    ids = tok.encode(batch[:2])
    assert torch.equal(loaded.encode(batch[:2]), ids)
    images = loaded.decode(ids[:, :4], timesteps=3, seed=1)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert torch.equal(images, tok.decode(ids[:, :4], timesteps=3, seed=1))


def test_discotok_train_runs_the_tiny_experiment_and_saves_a_tokenizer_that_decodes(photo_batch, tmp_path):
    from tests.finetuning import two_steps

    summary, tok = two_steps(None, tmp_path / "run", "experiment=flextok_tiny")
    assert summary["val_psnr_db"] > 0 and tok.config["decoder"]["name"] == "flextok"
    assert tok.config["encoder"]["freeze_vae"] is True and tok.decoder.freeze_vae
    ids = tok.encode(photo_batch[:2], num_tokens=8)
    images = tok.decode(ids, timesteps=2, seed=0)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
