"""Training: every quantizer trains with every encoder/decoder pair; gradients reach the encoder.

Whether training learns is judged in tests/test_learning.py, against a baseline on held-out photos."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from discotok import Tokenizer
from discotok.train.module import TokenizerModule, warmup_cosine
from tests.conftest import ENCODERS, TINY_QUANTIZERS, tiny_tokenizer_config

MATRIX = [(encoder, quantizer) for encoder in ENCODERS for quantizer in sorted(TINY_QUANTIZERS)]


@pytest.mark.parametrize("encoder, quantizer", MATRIX)
def test_gradients_reach_encoder(encoder, quantizer, photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config(quantizer, encoder=encoder)).train()
    out = tok(photo_batch)
    loss = (out.x_hat - photo_batch).abs().mean() + out.quantized.loss
    loss.backward()
    for name, p in tok.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{encoder}/{quantizer}: no gradient at encoder.{name}"


@pytest.mark.parametrize("encoder, quantizer", MATRIX)
def test_two_step_training_run(encoder, quantizer, photo_batch, tmp_path):
    config = tiny_tokenizer_config(quantizer, encoder=encoder)
    module = TokenizerModule(config, optim={"lr": 1e-3, "warmup_steps": 1})
    before = {k: v.clone() for k, v in module.tokenizer.encoder.state_dict().items()}
    loader = DataLoader(photo_batch, batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert trainer.global_step == 2
    metrics = trainer.validate(module, loader, verbose=False)[0]
    assert torch.isfinite(torch.tensor(metrics["val/psnr"])) and 0 < metrics["val/usage"] <= 1
    after = module.tokenizer.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "encoder weights did not move"
    tok = module.tokenizer.eval()
    out = tok(photo_batch)
    assert torch.isfinite(out.x_hat).all()
    assert torch.allclose(tok.quantizer.ids_to_codes(out.ids), out.quantized.z_q, atol=1e-5)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
