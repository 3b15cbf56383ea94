"""Two-process DDP on CPU (gloo, trainer=ddp_sim), with a GAN and EMA: every rank holds the same
codebooks and draws the same random depths and prefix lengths, while reading different data."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from discotok.train.run import config_dir, train
from tests.restarts import record_restarts, restart_problems

THRESHOLD = 1.0  # dead-code threshold: codes used less than once per step are re-seeded


class RankRecorder(L.Callback):
    """After every training step, record this rank's codebook buffers, drawn depth, prefix lengths and batch,
    and every dead-code restart of each level. ``break_broadcast`` removes the restarts' broadcast (to see
    the checks fail)."""

    def __init__(self, folder: Path, break_broadcast: bool = False) -> None:
        self.folder = folder
        self.break_broadcast = break_broadcast
        self.steps: list[dict] = []
        self.drawn: dict = {}
        self.restarts: list[list[dict]] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        tok = module.tokenizer
        if self.break_broadcast:
            import discotok.quantizers.vq as vq_module

            vq_module.broadcast_ = lambda *tensors, src=0: None
        self.restarts = [[] for _ in tok.quantizer.levels]
        for level, log in zip(tok.quantizer.levels, self.restarts):
            record_restarts(level, log)
        tok.encoder.register_forward_hook(lambda m, args, out: self.drawn.update(keep=out.keep.tolist()))
        tok.quantizer.register_forward_hook(lambda m, args, out: self.drawn.update(depth=out.ids.shape[-1]))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        buffers = {k: v.clone() for k, v in module.tokenizer.quantizer.state_dict().items()}
        buffers["lecam_ema"] = module.adversarial.lecam_ema.clone()
        self.steps.append({**self.drawn, "buffers": buffers, "batch": batch.sum().item()})

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        torch.save(self.steps, self.folder / f"rank{trainer.global_rank}.pt")
        torch.save(self.restarts, self.folder / f"restarts{trainer.global_rank}.pt")


def test_ranks_agree_on_codebooks_and_random_draws(tmp_path, break_broadcast: bool = False):
    overrides = [
        "trainer=ddp_sim", "encoder=flexible", "decoder=titok", "quantizer=rvq",
        "encoder.num_tokens=8", "encoder.patch_size=8", "encoder.width=32", "encoder.depth=1", "encoder.heads=2",
        "encoder.k_distribution=uniform", "quantizer.codebook_size=16", "quantizer.depth=3",
        "quantizer.quantizer_dropout=1.0", f"quantizer.dead_code_threshold={THRESHOLD}",
        "data.image_size=[32,32]", "data.batch_size=4", "data.val_samples=4",
        "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "ema.decay=0.9", f"+output_dir={tmp_path / 'run'}",
        "loss.adversarial.weight=0.1", "loss.adversarial.discriminator.channels=8", "loss.adversarial.discriminator.num_layers=2",
        "loss.adversarial.start_step=2", "loss.adversarial.lecam_weight=0.1",
    ]
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=overrides)
    summary = train(cfg, callbacks=[RankRecorder(tmp_path, break_broadcast)])
    assert summary["steps"] == 4 and (tmp_path / "run" / "tokenizer" / "model.safetensors").is_file()

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(rank0) == len(rank1) == 4
    for step, (a, b) in enumerate(zip(rank0, rank1)):
        assert a["batch"] != b["batch"], f"step {step}: both ranks trained on the same data"
        assert a["depth"] == b["depth"] and a["keep"] == b["keep"], f"step {step}: random draws differ"
        for key in a["buffers"]:
            assert torch.equal(a["buffers"][key], b["buffers"][key]), f"step {step}: {key} differs across ranks"
    assert all(s["buffers"]["levels.0.initted"] for s in rank0)  # k-means ran at the first step
    assert (rank0[-1]["buffers"]["lecam_ema"] != 0).all() and (rank0[1]["buffers"]["lecam_ema"] == 0).all()
    assert len({s["depth"] for s in rank0}) > 1 and len({tuple(s["keep"]) for s in rank0}) > 1
    restarts0, restarts1 = (torch.load(tmp_path / f"restarts{r}.pt", weights_only=True) for r in (0, 1))
    assert sum(len(level) for level in restarts0) > 0, "no dead code was restarted: the test would not exercise the broadcast"
    problems = [f"level {j}: {p}" for j, (a, b) in enumerate(zip(restarts0, restarts1)) if a or b for p in restart_problems(a, b)]
    assert not problems, problems
