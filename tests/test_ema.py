"""EMA of the tokenizer weights: the average itself, validation on it, checkpoints carrying it."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from discotok import Tokenizer
from discotok.metrics import psnr
from discotok.train.ema import TokenizerEMA
from discotok.train.module import TokenizerModule
from tests.conftest import tiny_tokenizer_config


def test_parameters_are_averaged_and_buffers_copied(photo_batch):
    tok = Tokenizer.from_config(tiny_tokenizer_config("rvq")).train()
    ema = TokenizerEMA(tok, decay=0.9, start_step=1)
    first = [p.clone() for p in tok.parameters()]
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(1.0)
    ema.update(tok, step=1)  # up to start_step: a copy
    assert all(torch.equal(a, b) for a, b in zip(ema.tokenizer.parameters(), tok.parameters()))
    tok(photo_batch)  # k-means, EMA codebooks and the depth counter move
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(1.0)
    ema.update(tok, step=2)
    ema.update(tok, step=3)
    for avg, live, start in zip(ema.tokenizer.parameters(), tok.parameters(), first):
        # after the copy (start + 1) the average moves towards start + 2: 1 - 0.9^2 of the way
        assert torch.allclose(avg, start + 1 + (1 - 0.9**2), atol=1e-5)
    for avg, live in zip(ema.tokenizer.buffers(), tok.buffers()):
        assert torch.equal(avg, live)
    assert int(ema.tokenizer.quantizer.steps) == int(tok.quantizer.steps) == 1
    assert not any(p.requires_grad for p in ema.parameters())


def test_validation_and_export_use_the_ema_weights(photo_batch):
    module = TokenizerModule(tiny_tokenizer_config("fsq"), ema={"decay": 0.5})
    with torch.no_grad():
        for p in module.tokenizer.parameters():
            p.mul_(0.5)  # the live weights move away from the average
    module.ema.update(module.tokenizer, step=1)  # the first update after start_step 0 copies
    with torch.no_grad():
        for p in module.tokenizer.parameters():
            p.add_(0.1)
    exported = module.export_tokenizer()
    assert exported is module.ema.tokenizer
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(module, DataLoader(photo_batch, batch_size=8), verbose=False)[0]
    with torch.no_grad():
        ema_psnr = psnr(exported.eval()(photo_batch).x_hat, photo_batch).mean()
        live_psnr = psnr(module.tokenizer.eval()(photo_batch).x_hat, photo_batch).mean()
    assert abs(metrics["val/psnr"] - float(ema_psnr)) < 1e-4 and abs(float(ema_psnr - live_psnr)) > 1e-2
    assert "ema.average.module.decoder.net.0.weight" in module.state_dict()  # checkpoints carry the average
