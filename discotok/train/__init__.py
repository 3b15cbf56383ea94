"""Training: the LightningModule, callbacks and the Hydra entry point."""

from discotok.train.module import TokenizerModule

__all__ = ["TokenizerModule"]
