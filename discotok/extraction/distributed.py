"""Extraction on several devices through Lightning: ``Trainer.predict`` and a prediction writer.

Each rank encodes the shards ``rank, rank + world_size, ...`` that are not done yet (its own
data loader, built after the processes start) and writes them itself through the shared
``ShardWriter``; all ranks meet at a barrier, then rank 0 merges the manifest
(``discotok.extraction.encode.extract``). Works on GPUs (NCCL) and CPU processes (gloo).
"""

from __future__ import annotations

import logging
import sys
import warnings

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader
from tqdm import tqdm

from discotok.extraction.shards import ShardBatches, ShardPlan, ShardWriter
from discotok.extraction.sources import EncodedBatch, ItemDataset, LoadedBatch, Reader, collate_items, encode_batch
from discotok.tokenizers.tokenizer import Tokenizer


class _EncodeModule(L.LightningModule):
    def __init__(self, tokenizer: Tokenizer, reader: Reader, options: dict) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.reader = reader
        self.options = options

    def predict_step(self, batch: LoadedBatch, batch_idx: int) -> EncodedBatch:
        return encode_batch(self.tokenizer, self.reader, batch, self.options)


class _ShardData(L.LightningDataModule):
    """Builds each rank's loader once the rank is known."""

    def __init__(self, plan: ShardPlan, reader: Reader, batch_size: int, workers: int, overwrite: bool) -> None:
        super().__init__()
        self.plan, self.reader, self.batch_size, self.workers, self.overwrite = plan, reader, batch_size, workers, overwrite
        self.shards: list[int] = []

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        self.shards = (list(range(rank, self.plan.num_shards, world)) if self.overwrite
                       else self.plan.pending(rank, world))
        return DataLoader(ItemDataset(self.plan.items, self.reader), num_workers=self.workers,
                          batch_sampler=ShardBatches(self.plan, self.shards, self.batch_size), collate_fn=collate_items)


class ShardPredictionWriter(BasePredictionWriter):
    """Hands every predicted batch to this rank's ``ShardWriter``; rank 0 shows a progress bar."""

    def __init__(self, plan: ShardPlan, progress: bool) -> None:
        super().__init__(write_interval="batch")
        self.plan, self.progress = plan, progress
        self.writer: ShardWriter | None = None
        self.bar: tqdm | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.writer = ShardWriter(self.plan, trainer.global_rank)
        self.bar = tqdm(desc=f"encode (rank 0 of {trainer.world_size})", unit="item", file=sys.stderr,
                        disable=not self.progress or trainer.global_rank != 0)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        self.writer.add(prediction)
        self.bar.update(len(prediction.indices) + len(prediction.failures))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar.close()
        self.writer.finish()


def run_distributed(
    plan: ShardPlan, tokenizer: Tokenizer, reader: Reader, options: dict, batch_size: int, workers: int,
    progress: bool, devices: int, accelerator: str, strategy: str, overwrite: bool,
) -> tuple[list[int], int]:
    """Encode the pending shards on ``devices`` processes; returns (shards this rank wrote, rank)."""
    callback = ShardPredictionWriter(plan, progress)
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
            trainer = L.Trainer(
                accelerator=accelerator, devices=devices, strategy=strategy, callbacks=[callback], logger=False,
                enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
            )
            data = _ShardData(plan, reader, batch_size, workers, overwrite)
            trainer.predict(_EncodeModule(tokenizer, reader, options), datamodule=data, return_predictions=False)
        trainer.strategy.barrier("discotok-extract")
    finally:
        quiet.setLevel(level)
    written = callback.writer.written if callback.writer else []
    return written, trainer.global_rank
