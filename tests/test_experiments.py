"""The experiment configs: published sizes and recipes compose, tiny ones train from the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.train.run import config_dir, plain, train
from discotok.tokenizers import tokenizer_config
from tests.test_train_cli import check_run_dir, run_train

PUBLISHED = {
    # name: (encoder, width, depth, heads, num_tokens, quantizer, decoder)
    "titok_s128": ("titok", 512, 8, 8, 128, "vq", "titok"),
    "titok_b64": ("titok", 768, 12, 12, 64, "vq", "titok"),
    "titok_l32": ("titok", 1024, 24, 16, 32, "vq", "titok"),
    "flextok_like": ("flexible", 768, 12, 12, 256, "fsq", "flow"),
}


def composed(experiment: str) -> dict:
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    return plain(cfg)


def build(cfg: dict) -> Tokenizer:
    return Tokenizer.from_config(
        tokenizer_config(cfg["encoder"], cfg["quantizer"], cfg["decoder"], cfg["data"]["image_size"])
    )


@pytest.mark.parametrize("experiment", sorted(PUBLISHED))
def test_published_sizes_compose(experiment):
    cfg = composed(experiment)
    encoder, width, depth, heads, num_tokens, quantizer, decoder = PUBLISHED[experiment]
    enc, dec = cfg["encoder"], cfg["decoder"]
    sizes = (width, depth, heads, num_tokens)
    assert (enc["name"], enc["width"], enc["depth"], enc["heads"], enc["num_tokens"]) == (encoder, *sizes)
    assert (dec["name"], dec["width"], dec["depth"], dec["heads"], dec["num_tokens"]) == (decoder, *sizes)
    assert enc["patch_size"] == dec["patch_size"] == 16 and enc["image_size"] == dec["image_size"] == [256, 256]
    assert cfg["quantizer"]["name"] == quantizer and cfg["trainer"]["accelerator"] == "gpu"
    if quantizer == "vq":
        q = cfg["quantizer"]
        assert (q["codebook_size"], q["code_dim"], q["cosine"], cfg["latent_dim"]) == (4096, 12, True, 12)
    else:
        assert enc["causal"] is True and cfg["quantizer"]["levels"] == [8, 8, 8, 5, 5, 5]


def test_titok_s128_has_the_reference_parameter_count():
    cfg = composed("titok_s128")
    tok = build(cfg)
    encoder = sum(p.numel() for p in [*tok.encoder.parameters(), *tok.quantizer.parameters()])
    assert encoder == pytest.approx(25.9e6, rel=0.02)  # bytedance/1d-tokenizer TiTok-S-128
    decoder = sum(p.numel() for p in tok.decoder.parameters())
    assert decoder == pytest.approx(27.0e6, rel=0.02)  # its ViT decoder with the 2*width tanh head
    assert tok.modality.num_tokens == 128
    assert tok.decoder.head.proj.in_features == 2 * 512  # the head's hidden layer is 2*width


@pytest.mark.parametrize("experiment, tokens", [
    ("titok_tiny", 16), ("flexible_tiny", 32), ("vit_tiny", 64), ("flow_tiny", 32), ("flextok_tiny", 16)])
def test_tiny_experiments_build_and_run(experiment, tokens, photo_batch):
    cfg = composed(experiment)
    tok = build(cfg)
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["data"]["image_size"] == [32, 32]
    assert tok.modality.num_tokens == tokens and tok(photo_batch[:2]).x_hat.shape == (2, 3, 32, 32)


def test_flexible_tiny_trains_from_the_cli(tmp_path):
    run_train("experiment=flexible_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2",
              "data.batch_size=4", "data.val_samples=4", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = check_run_dir(tmp_path / "run", "fsq")
    assert summary["tokens_per_image"] == 32 and summary["image_size"] == [32, 32]
    tok = Tokenizer.from_pretrained(tmp_path / "run" / "tokenizer")
    assert tok.config["encoder"]["name"] == "flexible" and tok.config["encoder"]["causal"] is True


GAN_RECIPES = {
    # name: (encoder, tokens, quantizer, codebook size, reconstruction l1/l2, adversarial weight, start step)
    "vqgan_f16": ("grid", 256, "vq", 16384, (0.0, 1.0), 0.5, 20000),
    "titok_s128": ("titok", 128, "vq", 4096, (0.0, 1.0), 0.1, 200000),
    "open_magvit2": ("magvit2", 256, "lfq", 2**18, (1.0, 0.0), 0.1, 0),
}


@pytest.mark.parametrize("experiment", sorted(GAN_RECIPES))
def test_published_recipes_train_with_perceptual_and_adversarial_losses(experiment):
    cfg = composed(experiment)
    encoder, tokens, quantizer, size, (l1, l2), weight, start = GAN_RECIPES[experiment]
    tok = build(cfg)
    assert (cfg["encoder"]["name"], tok.modality.num_tokens, cfg["quantizer"]["name"], tok.codebook_size) == (encoder, tokens, quantizer, size)
    loss = cfg["loss"]
    assert (loss["reconstruction"]["l1_weight"], loss["reconstruction"]["l2_weight"]) == (l1, l2)
    assert loss["perceptual"]["name"] == "lpips" and loss["perceptual"]["weight"] == 1.0
    adv = loss["adversarial"]
    assert adv["discriminator"]["name"] == "patch" and (adv["weight"], adv["start_step"]) == (weight, start)
    assert cfg["ema"]["decay"] > 0.99 and cfg["trainer"]["precision"] == "bf16-mixed"
    assert cfg["data"]["image_size"] == [256, 256]


def test_vqgan_f16_is_llamagen_vq16():
    cfg = composed("vqgan_f16")
    q = cfg["quantizer"]
    assert (q["code_dim"], q["cosine"], q["ema"], cfg["encoder"]["channel_mult"]) == (8, True, False, [1, 1, 2, 2, 4])
    assert composed("open_magvit2")["loss"]["adversarial"]["lecam_weight"] == 0.05


@pytest.mark.parametrize("experiment, quantizer", [("open_magvit2_tiny", "lfq"), ("titok_s128_tiny", "vq"), ("vqgan_f16_tiny", "vq")])
def test_tiny_recipes_train(experiment, quantizer, tmp_path, vgg16_random_weights):
    """The three recipes at CPU size: perceptual + adversarial + EMA for two steps, the EMA weights exported."""
    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[
            f"experiment={experiment}", f"loss.perceptual.vgg_weights={vgg16_random_weights}",
            "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
            "loss.adversarial.start_step=1", "data.batch_size=2", "data.val_samples=2",
            "trainer.enable_progress_bar=false", f"+output_dir={run_dir}",
        ])
    summary = train(cfg)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    check_run_dir(run_dir, quantizer, steps=2, hydra=False)
    assert summary["ema_weights"] and summary["val_lpips"] > 0
    metrics = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/d_hinge" in metrics and "train/lpips" in metrics
    ema = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    saved = load_file(run_dir / "tokenizer" / "model.safetensors")
    assert all(torch.equal(v, ema[f"ema.average.module.{k}"]) for k, v in saved.items())
