"""One training run from a composed config (``discotok train``'s Hydra app, ``discotok.train.app``, calls ``train``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from discotok.atomic import atomic_path
from discotok.figures import rounded
from discotok.defaults import config_dir  # noqa: F401  (re-exported: tests and scripts compose from it)
from discotok.registry import DATAMODULES
from discotok.registry import ConfigError
from discotok.tokenizers import tokenizer_config
from discotok.tokenizers.config import DEFAULT_MODALITY
from discotok.tokenizers.files import read_config
from discotok.train.callbacks import CodebookHistogram, ValidationExamples
from discotok.train.checkpoint_io import AtomicCheckpointIO
from discotok.train.launch import launch, processes_to_start
from discotok.train.module import TokenizerModule
from discotok.train.resume import resume_checkpoint

log = logging.getLogger(__name__)
LOGGER_KEYS = {"csv", "tensorboard", "wandb"}


def plain(node: Any) -> Any:
    """A resolved OmegaConf node as plain Python containers."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def summarize(module: TokenizerModule, metrics: dict[str, float], steps: int, val_data: str) -> dict[str, Any]:
    """The end-of-run numbers on the validation data ``val_data`` (what it is, in words): the modality's
    quality figures (images: PSNR, SSIM, LPIPS and the PSNR of 2x2 and 4x4 thumbnails of the same images;
    audio: SI-SNR, mel and STFT distances), codebook use and the bit budget."""
    tok = module.tokenizer
    summary: dict[str, Any] = {"steps": steps, "val_data": val_data, **tok.modality.quality_summary(metrics)}
    if module.hparams.init_from:
        summary["init_from"] = str(module.hparams.init_from)
    name = tok.config["quantizer"]["name"]
    if tok.quantizer.continuous:  # identity: continuous tokens, no codebook or bit rate
        summary |= {"quantizer": name, "continuous_dim": tok.quantizer.dim, **tok.modality.rate_summary(True)}
        return summary | {"ema_weights": module.ema is not None}
    summary |= {"val_codebook_usage": rounded(metrics, "usage", 6), "val_perplexity": rounded(metrics, "perplexity", 2),
                "quantizer": name, "codebook_size": tok.codebook_size}
    summary |= by_depth(metrics)
    return summary | tok.modality.rate_summary(False) | {"ema_weights": module.ema is not None}


def by_depth(metrics: dict[str, float]) -> dict[str, Any]:
    """Residual quantizers: ``val_by_depth`` ({depth: {score: value}}) and ``val_residual_share`` (per level)."""
    depths: dict[str, dict[str, float]] = {}
    shares = {}
    for key, value in metrics.items():
        head, _, name = key.removeprefix("val/").partition("/")
        if head.startswith("depth") and name:
            depths.setdefault(head.removeprefix("depth"), {})[name] = round(float(value), 4)
        elif head.startswith("level") and name == "residual_share":
            shares[int(head.removeprefix("level"))] = round(float(value), 4)
    if not depths:
        return {}
    return {"val_by_depth": dict(sorted(depths.items(), key=lambda kv: int(kv[0]))),
            "val_residual_share": [shares[j] for j in sorted(shares)]}


def tokenizer_spec(cfg: DictConfig) -> dict:
    """The tokenizer config of a run: the components, and the modality's fields that the datamodule names
    (``tokenizer_fields``: image size, or audio sample rate and channels). With ``init_from``, the
    components of that tokenizer directory, whose modality fields must be the data's."""
    data = plain(cfg.data)
    fields = DATAMODULES.get(data["name"]).tokenizer_fields(data)
    if cfg.get("init_from"):
        return init_spec(Path(cfg.init_from).expanduser(), fields)
    return tokenizer_config(plain(cfg.encoder), plain(cfg.quantizer), plain(cfg.decoder), **fields)


def init_spec(path: Path, fields: dict[str, Any]) -> dict:
    """The tokenizer config of the directory ``path`` (its architecture), checked against the data's ``fields``."""
    config = {k: v for k, v in read_config(path).items() if k not in ("metadata", "format", "version")}
    for key, value in fields.items():
        theirs = config.get(key, DEFAULT_MODALITY if key == "modality" else None)
        if theirs != value:
            raise ConfigError(f"init_from={path}: the tokenizer's {key} is {theirs!r} but the data's is {value!r}; "
                              f"set data.{key}={theirs} (or fine-tune another tokenizer)")
    return config


def build_loggers(spec: dict[str, Any], out_dir: Path) -> list[Logger]:
    """CSV and TensorBoard (each switchable), and Weights & Biases when ``spec["wandb"]`` is set."""
    unknown = set(spec) - LOGGER_KEYS
    if unknown:
        raise ValueError(f"unknown logger setting(s) {sorted(unknown)}; expected {sorted(LOGGER_KEYS)}")
    loggers: list[Logger] = []
    if spec.get("csv", True):
        loggers.append(CSVLogger(out_dir, name="logs", version=""))
    if spec.get("tensorboard", True):
        loggers.append(TensorBoardLogger(out_dir, name="tensorboard", version=""))
    if spec.get("wandb"):
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ImportError('logger=wandb needs the wandb package: pip install "discotok[wandb]"') from None
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(save_dir=str(out_dir), **spec["wandb"]))
    return loggers


def build_callbacks(trainer_cfg: dict[str, Any], out_dir: Path) -> list[L.Callback]:
    """Validation examples (the modality's: a reconstruction grid, example wavs), codebook-usage picture,
    checkpoints and, when shown, the rich progress bar."""
    callbacks: list[L.Callback] = [
        ValidationExamples(out_dir),
        CodebookHistogram(out_dir / "codebook_usage.png"),
        ModelCheckpoint(out_dir / "checkpoints", save_last=True),
    ]
    if trainer_cfg.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())
    return callbacks


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Train one tokenizer from a composed config; write the tokenizer, pictures, a summary.

    With ``trainer.strategy: ddp`` on one node, one process per device runs this (see
    ``discotok.train.launch``). ``callbacks`` are added to the trainer's own (tests, scripts).
    """
    out_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.output_dir)
    processes = processes_to_start(plain(cfg.trainer))
    if processes == 1:
        return train_process(cfg, out_dir, callbacks)
    launch(processes, train_process, cfg, out_dir, tuple(callbacks))
    return json.loads((out_dir / "summary.json").read_text())


def train_process(cfg: DictConfig, out_dir: Path, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """The training of one process (one DDP rank): fit, validate, and on rank 0 export and summarize."""
    L.seed_everything(cfg.seed, workers=True)
    module = TokenizerModule(tokenizer_spec(cfg), loss=plain(cfg.loss), optim=plain(cfg.optim), ema=plain(cfg.ema),
                             perturbation=plain(cfg.get("perturbation")), init_from=cfg.get("init_from"))
    rank_zero_info(f"discotok train: {module.initialisation()}")
    ckpt_path = resume_checkpoint(cfg.resume, module)
    datamodule = DATAMODULES.build(plain(cfg.data))
    trainer_cfg = plain(cfg.trainer)
    trainer = L.Trainer(
        **trainer_cfg,
        default_root_dir=out_dir,
        logger=build_loggers(plain(cfg.logger), out_dir),
        callbacks=[*build_callbacks(trainer_cfg, out_dir), *callbacks],
        plugins=[AtomicCheckpointIO()],
    )
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "config.yaml") as tmp:
            tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if module.validated_at == trainer.global_step:  # fit ended with a validation of the final weights
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    else:
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    summary = summarize(module, metrics, trainer.global_step, datamodule.val_description)
    if trainer.is_global_zero:
        tok = module.export_tokenizer()
        quality = tok.modality.quality_key
        tok.config["metadata"] = {"trained_steps": trainer.global_step, quality: summary[quality]}
        summary["tokenizer_dir"] = str(tok.save_pretrained(out_dir / "tokenizer"))
        key, path = tok.modality.examples_path(out_dir)
        summary[key] = str(path)
        with atomic_path(out_dir / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """Print the end-of-run summary as a small table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="discotok train: summary", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console(stderr=False).print(table)
