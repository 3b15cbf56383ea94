"""Two training steps from a converted tokenizer (``discotok train init_from=DIR``), shared by the image
converter tests: the run must start from the converted weights and move them a little. Without ``init_from`` the
same run trains from scratch (a tokenizer that ``discotok train`` saves, for reloading)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from discotok import Tokenizer
from discotok.train.run import config_dir, train


def two_steps(init_from: Path | None, output: Path, *overrides: str) -> tuple[dict, Tokenizer]:
    """Train two steps from the tokenizer directory ``init_from`` (None: from scratch) with the Hydra ``overrides``
    (an experiment, data sizes); the run's summary and the tokenizer it saved."""
    base = ["trainer=cpu", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
            "logger.tensorboard=false", *([f"init_from={init_from}"] if init_from else []), "data.batch_size=2",
            "data.val_samples=2", f"+output_dir={output}"]
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[*overrides, *base])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(cfg)
    assert summary["steps"] == 2 and summary.get("init_from") == (str(init_from) if init_from else None)
    return summary, Tokenizer.from_pretrained(summary["tokenizer_dir"])


def moved_from(start: Tokenizer, tuned: Tokenizer) -> list[str]:
    """The parameters two steps changed, after checking that some did and that none moved by more than half its
    scale (a run that started from fresh weights would)."""
    assert tuned.config["encoder"] == start.config["encoder"] and tuned.config["decoder"] == start.config["decoder"]
    before, after = dict(start.named_parameters()), dict(tuned.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "two steps changed no weight"
    drift = max(float((after[k] - before[k]).abs().max() / before[k].abs().max().clamp(min=1e-6)) for k in moved)
    assert drift < 0.5, "the run did not start from the converted weights"
    return moved
