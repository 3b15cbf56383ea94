"""Representation alignment (REPA): a frozen timm teacher from a local file, a projector, cosine loss."""

from __future__ import annotations

import lightning as L
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from discotok import Tokenizer
from discotok.losses import LOSSES, MissingWeightsError
from discotok.train.module import TokenizerModule
from tests.conftest import tiny_tokenizer_config


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A randomly initialised timm ``test_vit`` (patch 16, width 64) saved as its pretrained weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "test_vit.safetensors"
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), str(path))
    return path


def spec(path, **kwargs) -> dict:
    return {"name": "repa", "model": "test_vit", "weights": str(path), "input_size": 64,
            "model_kwargs": {"img_size": 64}, "projector_width": 32, **kwargs}


@pytest.mark.parametrize("encoder, layer", [("titok", "encoder"), ("grid", "encoder"), ("vit", "decoder"),
                                            ("flexible", "encoder.transformer.blocks.0")])
def test_loss_is_finite_teacher_gets_no_gradient_and_the_encoder_does(teacher_file, photo_batch, encoder, layer):
    torch.manual_seed(0)
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder=encoder)).train()
    loss_fn = LOSSES.build(spec(teacher_file, layer=layer), tokenizer=tok)
    with loss_fn.capture(tok) as features:
        tok(photo_batch[:4])
    assert len(features) == 1
    loss, parts = loss_fn(features, photo_batch[:4])
    assert torch.isfinite(loss) and -1 <= loss.item() <= 1 and parts["alignment_cosine"] == pytest.approx(-loss.item())
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in loss_fn.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss_fn.projector.parameters())
    side = layer.split(".")[0]
    first = next(getattr(tok, side).parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradients reach the aligned part of the tokenizer
    assert loss_fn.teacher(photo_batch[:1])[0].shape == (1, 64, 4, 4)  # the teacher's patch grid


def test_fitting_the_projector_raises_the_cosine(teacher_file, photo_batch):
    """Fitting the projector alone on fixed features drives the cosine to the teacher up."""
    torch.manual_seed(0)
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="vit")).eval()
    loss_fn = LOSSES.build(spec(teacher_file), tokenizer=tok)
    with torch.no_grad(), loss_fn.capture(tok) as features:
        tok(photo_batch[:4])
    opt = torch.optim.Adam(loss_fn.projector.parameters(), lr=1e-2)
    first = loss_fn(features, photo_batch[:4])[0].item()
    for _ in range(20):
        loss = loss_fn(features, photo_batch[:4])[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.2


def test_missing_weights_and_bad_layers_give_clear_errors(teacher_file, tmp_path):
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="titok"))
    with pytest.raises(MissingWeightsError, match="loss.alignment.weights.*loss.alignment.weight=0"):
        LOSSES.build(spec(tmp_path / "dinov2.safetensors"), tokenizer=tok)
    with pytest.raises(MissingWeightsError, match="no weights file given"):
        LOSSES.build({**spec(teacher_file), "weights": None}, tokenizer=tok)
    with pytest.raises(ValueError, match="not a module of the tokenizer"):
        LOSSES.build(spec(teacher_file, layer="encoder.nothing"), tokenizer=tok)


def test_module_trains_with_alignment_and_checkpoints_leave_the_teacher_out(teacher_file, photo_batch, tmp_path):
    config = tiny_tokenizer_config("fsq", encoder="titok")
    assert TokenizerModule(config).alignment is None  # off by default
    module = TokenizerModule(config, loss={"alignment": {**spec(teacher_file), "weight": 0.5}}, optim={"warmup_steps": 1})
    projector = [p.clone() for p in module.alignment.projector.parameters()]
    teacher = [p.clone() for p in module.alignment.teacher.parameters()]
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=DataLoader(photo_batch, batch_size=4))
    assert any(not torch.equal(a, b) for a, b in zip(projector, module.alignment.projector.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(teacher, module.alignment.teacher.parameters()))
    keys = module.state_dict().keys()
    assert any(k.startswith("alignment.projector.") for k in keys)
    assert not any(k.startswith("alignment.teacher.") for k in keys)
