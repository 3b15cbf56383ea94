"""Resume from a run whose ``last.ckpt`` was left empty or truncated: the newest checkpoint that
loads takes over (said in one line), and when none loads, one clear error names them all."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir

from discotok.train.checkpoint_io import AtomicCheckpointIO
from discotok.train.resume import ResumeError
from discotok.train.run import config_dir, train

TINY = ["experiment=smoke", "quantizer=vq", "quantizer.codebook_size=32", "trainer.val_check_interval=1", "loss.adversarial=null"]


class StartStep(L.Callback):
    """Record the step training starts at and the checkpoint writer in use."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.step = trainer.global_step
        self.io = trainer.strategy.checkpoint_io


def run(out: Path, *overrides: str, callbacks=()) -> dict:
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[*TINY, *overrides, f"+output_dir={out}"])
    return train(cfg, callbacks=callbacks)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "first"
    run(out, "trainer.max_steps=2")
    return out


def broken_copy(first_run: Path, where: Path, damage) -> Path:
    """A copy of the first run's checkpoints with ``damage(folder)`` applied."""
    folder = where / "checkpoints"
    folder.mkdir(parents=True)
    for p in (first_run / "checkpoints").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
        os.utime(folder / p.name, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns))
    damage(folder)
    return where


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_empty_last_falls_back_to_the_newest_good_checkpoint(first_run: Path, tmp_path: Path, capsys) -> None:
    (step_ckpt,) = [p.name for p in (first_run / "checkpoints").glob("epoch=*.ckpt")]

    def damage(folder: Path) -> None:
        (folder / "last.ckpt").write_bytes(b"")
        older = folder / "epoch=0-step=1.ckpt"  # an older good checkpoint the fallback must not prefer
        older.write_bytes((folder / step_ckpt).read_bytes())
        os.utime(older, ns=(1, 1))

    cut = broken_copy(first_run, tmp_path / "cut", damage)
    start = StartStep()
    summary = run(tmp_path / "resumed", "trainer.max_steps=3", f"resume={cut}", callbacks=[start])
    assert start.step == 2 and summary["steps"] == 3, "the run did not continue from the good checkpoint"
    assert isinstance(start.io, AtomicCheckpointIO)
    lines = [line for line in capsys.readouterr().err.splitlines() if "resuming from" in line]
    assert len(lines) == 1 and "last.ckpt (empty file)" in lines[0] and lines[0].endswith(step_ckpt)


def test_truncated_last_falls_back(first_run: Path, tmp_path: Path, capsys) -> None:
    cut = broken_copy(first_run, tmp_path / "cut", lambda folder: truncate(folder / "last.ckpt"))
    start = StartStep()
    run(tmp_path / "resumed", "trainer.max_steps=3", f"resume={cut}", callbacks=[start])
    assert start.step == 2
    assert "last.ckpt (does not load" in capsys.readouterr().err


def test_nothing_loads_is_one_clear_error(first_run: Path, tmp_path: Path) -> None:
    def damage(folder: Path) -> None:
        for p in folder.iterdir():
            truncate(p, 0.3)
        (folder / "last.ckpt").write_bytes(b"")

    cut = broken_copy(first_run, tmp_path / "cut", damage)
    with pytest.raises(ResumeError) as err:
        run(tmp_path / "resumed", "trainer.max_steps=3", f"resume={cut}")
    message = str(err.value)
    assert "\n" not in message and "no checkpoint of the run loads" in message
    assert "last.ckpt (empty file)" in message and "epoch=0-step=2.ckpt (does not load" in message


def test_a_named_corrupt_checkpoint_is_refused_clearly(first_run: Path, tmp_path: Path) -> None:
    cut = broken_copy(first_run, tmp_path / "cut", lambda folder: truncate(folder / "last.ckpt"))
    with pytest.raises(ResumeError, match=r"last\.ckpt does not load: "):
        run(tmp_path / "resumed", "trainer.max_steps=3", f"resume={cut / 'checkpoints' / 'last.ckpt'}")
