"""Resume: N steps straight equal N/2 steps, an interruption, and N/2 resumed steps."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from discotok.train.resume import ResumeError
from discotok.train.run import config_dir, train

STEPS = 4
TINY_GAN = [
    "experiment=smoke", "quantizer=vq", "quantizer.codebook_size=64", "quantizer.dead_code_threshold=1.0", "ema.decay=0.8",
    "loss.adversarial.weight=0.5", "loss.adversarial.discriminator.channels=8",
    "loss.adversarial.discriminator.num_layers=2", "loss.adversarial.start_step=1", "loss.adversarial.lecam_weight=0.1",
    "optim.grad_clip=1.0", f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS // 2}",
]


class Preempt(L.Callback):
    """Kill the run (an exception, as a crash or a lost node would) once it reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("preempted")


def run(out, *overrides: str, callbacks=()) -> dict:
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[*TINY_GAN, *overrides, f"+output_dir={out}"])
    return train(cfg, callbacks=callbacks)


def final_state(run_dir) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS
    return ckpt


def test_resumed_run_matches_the_uninterrupted_one(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        run(tmp_path / "straight")
        with pytest.raises(RuntimeError, match="preempted"):
            run(tmp_path / "cut", callbacks=[Preempt(STEPS // 2)])
        assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS // 2
        summary = run(tmp_path / "resumed", f"resume={tmp_path / 'cut'}")
    finally:
        torch.use_deterministic_algorithms(False)
    assert summary["steps"] == STEPS
    straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    assert any(k.startswith("ema.") for k in straight["state_dict"]) and "adversarial.lecam_ema" in straight["state_dict"]
    for key, value in straight["state_dict"].items():  # tokenizer, EMA, discriminator, LeCAM means
        assert torch.allclose(value.float(), resumed["state_dict"][key].float(), rtol=1e-5, atol=1e-6), key
    for opt_a, opt_b in zip(straight["optimizer_states"], resumed["optimizer_states"]):
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values()):
            assert all(torch.allclose(state_a[k].float(), state_b[k].float(), rtol=1e-5, atol=1e-7) for k in state_a)
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


def test_resume_refuses_another_model(tmp_path):
    run(tmp_path / "first", "trainer.max_steps=1", "trainer.val_check_interval=1")
    with pytest.raises(ResumeError, match="encoder.width"):
        run(tmp_path / "second", f"resume={tmp_path / 'first'}", "encoder.width=32")
    with pytest.raises(ResumeError, match="no checkpoints/last.ckpt"):
        run(tmp_path / "third", f"resume={tmp_path}")
