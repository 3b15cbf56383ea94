"""The transformer experiment configs: published sizes compose, tiny ones train from the CLI."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from discotok import Tokenizer
from discotok.train.run import config_dir, plain
from discotok.tokenizers import tokenizer_config
from tests.test_train_cli import check_run_dir, run_train

PUBLISHED = {
    # name: (encoder, width, depth, heads, num_tokens, quantizer)
    "titok_s128": ("titok", 512, 8, 8, 128, "vq"),
    "titok_b64": ("titok", 768, 12, 12, 64, "vq"),
    "titok_l32": ("titok", 1024, 24, 16, 32, "vq"),
    "flextok_like": ("flexible", 768, 12, 12, 256, "fsq"),
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
    encoder, width, depth, heads, num_tokens, quantizer = PUBLISHED[experiment]
    enc, dec = cfg["encoder"], cfg["decoder"]
    sizes = (width, depth, heads, num_tokens)
    assert (enc["name"], enc["width"], enc["depth"], enc["heads"], enc["num_tokens"]) == (encoder, *sizes)
    assert (dec["name"], dec["width"], dec["depth"], dec["heads"], dec["num_tokens"]) == ("titok", *sizes)
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
    assert tok.num_tokens == 128


@pytest.mark.parametrize("experiment, tokens", [("titok_tiny", 16), ("flexible_tiny", 32), ("vit_tiny", 64)])
def test_tiny_experiments_build_and_run(experiment, tokens, photo_batch):
    cfg = composed(experiment)
    tok = build(cfg)
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["data"]["image_size"] == [32, 32]
    assert tok.num_tokens == tokens and tok(photo_batch[:2]).x_hat.shape == (2, 3, 32, 32)


def test_flexible_tiny_trains_from_the_cli(tmp_path):
    run_train("experiment=flexible_tiny", "trainer.max_steps=2", "trainer.val_check_interval=2",
              "data.batch_size=4", "data.val_samples=4", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = check_run_dir(tmp_path / "run", "fsq")
    assert summary["tokens_per_image"] == 32 and summary["image_size"] == [32, 32]
    tok = Tokenizer.from_pretrained(tmp_path / "run" / "tokenizer")
    assert tok.config["encoder"]["name"] == "flexible" and tok.config["encoder"]["causal"] is True
