"""Training: the LightningModule (``module``), callbacks, one run (``run``) and the Hydra app (``app``).

Nothing is imported here, so ``discotok train --help`` starts without Lightning."""
