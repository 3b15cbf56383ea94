"""Sweeps: jobs through hydra-submitit-launcher (its local executor), the SLURM launcher config,
DDP process counts, loggers."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import OmegaConf

from discotok.train.launch import processes_to_start
from discotok.train.run import build_callbacks, build_loggers, config_dir
from tests.test_train_cli import check_run_dir, run_train


def test_sweep_runs_jobs_through_submitit(tmp_path):
    """The launcher plugin behind hydra/launcher=slurm, with the job as a local process."""
    run_train("-m", "hydra/launcher=submitit_local", "quantizer=fsq", "experiment=smoke",
              f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${quantizer.name}", cwd=tmp_path)
    check_run_dir(tmp_path / "fsq", "fsq")
    resolved = OmegaConf.load(tmp_path / "fsq" / "config.yaml")
    assert resolved.quantizer.name == "fsq" and resolved.encoder.latent_dim == resolved.latent_dim == 16
    assert any(p.name.endswith("_result.pkl") for p in (tmp_path / ".submitit").rglob("*")), "no submitit job ran"


@pytest.mark.slow
def test_a_sweep_of_ddp_runs(tmp_path):
    """-m with DDP inside each run: the second job starts its own process group from a clean parent."""
    run_train("-m", "quantizer=vq,fsq", "trainer=ddp_sim", "experiment=smoke",
              f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${quantizer.name}", cwd=tmp_path)
    for name in ("vq", "fsq"):
        check_run_dir(tmp_path / name, name)


def test_slurm_launcher_asks_for_one_task_per_gpu():
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp_multinode", "trainer.num_nodes=4"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (4, 8, 8)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "bf16-mixed"


def test_processes_to_start(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert processes_to_start({"strategy": "ddp", "accelerator": "cpu", "devices": 2}) == 2
    assert processes_to_start({"strategy": "ddp", "devices": 8, "num_nodes": 2}) == 1  # started by the cluster
    assert processes_to_start({"devices": 1}) == 1
    monkeypatch.setenv("LOCAL_RANK", "0")  # a worker (or torchrun) already started this process
    assert processes_to_start({"strategy": "ddp", "accelerator": "cpu", "devices": 2}) == 1


def test_rich_progress_bar_when_shown(tmp_path):
    shown = build_callbacks({"enable_progress_bar": True}, tmp_path)
    assert any(isinstance(c, RichProgressBar) for c in shown)
    assert not any(isinstance(c, RichProgressBar) for c in build_callbacks({"enable_progress_bar": False}, tmp_path))


def test_loggers(tmp_path):
    assert [type(x).__name__ for x in build_loggers({"csv": True, "tensorboard": True}, tmp_path)] == [
        "CSVLogger", "TensorBoardLogger"]
    assert build_loggers({"csv": False, "tensorboard": False}, tmp_path) == []
    with pytest.raises(ValueError, match="unknown logger"):
        build_loggers({"mlflow": True}, tmp_path)
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"discotok\[wandb\]"):
            build_loggers({"wandb": {"project": "x"}}, tmp_path)
