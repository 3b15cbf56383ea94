"""Mixed precision: quantizer math stays float32 under bf16 autocast; a bf16-mixed GAN run trains."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from discotok.quantizers import QUANTIZERS
from discotok.train.module import TokenizerModule
from tests.conftest import TINY_QUANTIZERS, tiny_tokenizer_config


SPECS = {**TINY_QUANTIZERS, "vq_cosine": {**TINY_QUANTIZERS["vq"], "cosine": True}}


def code_space(name: str) -> dict:
    """The tiny quantizer with its input already in code space (no projection runs under autocast)."""
    spec = dict(SPECS[name])
    quantizer = QUANTIZERS.build(spec)
    return {**spec, "dim": quantizer.code_dim}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_quantizer_math_is_float32_under_bf16_autocast(name):
    spec = code_space(name)
    torch.manual_seed(0)
    quantizer = QUANTIZERS.build(spec).train()
    h = torch.randn(4, 16, spec["dim"]).bfloat16()
    reference = copy.deepcopy(quantizer)
    torch.manual_seed(1)  # the same k-means seeds and dead-code samples in both runs
    expected = reference(h.float())
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(h)
    assert out.z_q.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert torch.equal(out.ids, expected.ids)
    assert torch.allclose(out.loss, expected.loss, rtol=1e-5, atol=1e-6)
    for (key, a), b in zip(quantizer.state_dict().items(), reference.state_dict().values()):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), atol=1e-6), key


def test_bf16_mixed_gan_run(photo_batch, tmp_path):
    """trainer=gpu's precision on CPU: autocast around the tokenizer, the discriminator and both optimizer steps."""
    loss = {"adversarial": {"discriminator": {"name": "patch", "channels": 8, "num_layers": 2}, "adaptive_weight": True}}
    module = TokenizerModule(tiny_tokenizer_config("vq"), loss=loss, optim={"warmup_steps": 1, "grad_clip": 1.0})
    trainer = L.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
    )
    trainer.fit(module, DataLoader(photo_batch, batch_size=4))
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and torch.isfinite(trainer.callback_metrics["train/d_hinge"])
    assert all(p.dtype == torch.float32 for p in module.parameters())
