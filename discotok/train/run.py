"""The Hydra entry point behind ``discotok train``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from discotok.atomic import atomic_path
from discotok.data import audio_datamodule, datamodule  # noqa: F401  (register the image and audio datamodules)
from discotok.registry import DATAMODULES
from discotok.tokenizers import tokenizer_config
from discotok.train.callbacks import AudioExamples, ReconstructionGrid
from discotok.train.module import TokenizerModule

log = logging.getLogger(__name__)


def config_dir() -> str:
    """The ``configs/`` tree: beside the package in a checkout, inside it in an installed wheel."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"discotok's configs/ folder was not found beside {here}")


def plain(node: Any) -> Any:
    """A resolved OmegaConf node as plain Python containers."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def summarize(module: TokenizerModule, metrics: dict[str, float], steps: int) -> dict[str, Any]:
    """The end-of-run numbers: quality (PSNR; audio: SI-SNR, mel distance), codebook use, the bit budget."""
    tok = module.tokenizer

    def metric(name: str, digits: int) -> float:
        return round(float(metrics.get(f"val/{name}", float("nan"))), digits)

    usage = {"val_codebook_usage": metric("usage", 4), "val_perplexity": metric("perplexity", 2)}
    if tok.modality == "audio":
        return {
            "steps": steps, "val_si_snr_db": metric("si_snr", 3), "val_mel_distance": metric("mel_distance", 4),
            "val_stft_distance": metric("stft_distance", 4), **usage,
            "quantizer": tok.config["quantizer"]["name"], "codebook_size": tok.codebook_size,
            "sample_rate": tok.sample_rate, "channels": tok.channels, "hop_length": tok.hop_length,
            "frames_per_second": round(tok.frames_per_second, 3), "bits_per_token": round(tok.bits_per_token, 3),
            "bits_per_second": round(tok.bits_per_second(), 1),
            "bits_per_second_by_depth": {str(k): round(v, 1) for k, v in tok.bit_rates.items()},
        }
    return {
        "steps": steps,
        "val_psnr_db": metric("psnr", 3),
        **usage,
        "quantizer": tok.config["quantizer"]["name"],
        "codebook_size": tok.codebook_size,
        "tokens_per_image": tok.num_tokens,
        "bits_per_token": round(tok.bits_per_token, 3),
        "bits_per_image": round(tok.num_tokens * tok.bits_per_token, 1),
        "image_size": list(tok.image_size),
    }


def tokenizer_spec(cfg: DictConfig) -> dict:
    """The tokenizer config of a run: audio when the data config names a sample rate."""
    data = plain(cfg.data)
    parts = plain(cfg.encoder), plain(cfg.quantizer), plain(cfg.decoder)
    if "sample_rate" in data:
        return tokenizer_config(*parts, modality="audio", sample_rate=int(data["sample_rate"]), channels=int(data["channels"]))
    return tokenizer_config(*parts, image_size=data["image_size"])


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one tokenizer from a composed config; write the tokenizer, a grid and a summary."""
    out_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    module = TokenizerModule(tokenizer_spec(cfg), loss=plain(cfg.loss), optim=plain(cfg.optim))
    datamodule = DATAMODULES.build(plain(cfg.data))
    audio = module.tokenizer.modality == "audio"
    examples = AudioExamples(out_dir / "examples") if audio else ReconstructionGrid(out_dir / "reconstructions.png")
    trainer = L.Trainer(
        **plain(cfg.trainer),
        default_root_dir=out_dir,
        logger=[CSVLogger(out_dir, name="logs", version=""), TensorBoardLogger(out_dir, name="tensorboard", version="")],
        callbacks=[examples, ModelCheckpoint(out_dir / "checkpoints", save_last=True)],
    )
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    summary = summarize(module, metrics, trainer.global_step)
    if trainer.is_global_zero:
        quality = "val_si_snr_db" if audio else "val_psnr_db"
        module.tokenizer.config["metadata"] = {"trained_steps": trainer.global_step, quality: summary[quality]}
        summary["tokenizer_dir"] = str(module.tokenizer.save_pretrained(out_dir / "tokenizer"))
        summary["examples" if audio else "reconstructions"] = str(examples.folder if audio else examples.path)
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


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_main(cfg: DictConfig) -> dict[str, Any]:
    return train(cfg)


def holds_audio(folder: Path, look_at: int = 200) -> bool:
    """Whether most of the first ``look_at`` files under ``folder`` have audio extensions."""
    from discotok.data.audio import AUDIO_EXTENSIONS

    if not folder.is_dir():
        return False
    files = [p for _, p in zip(range(look_at), (p for p in folder.rglob("*") if p.is_file()))]
    return sum(p.suffix.lower() in AUDIO_EXTENSIONS for p in files) * 2 > len(files) > 0


def rewrite_overrides(argv: list[str]) -> list[str]:
    """Let ``data=<folder>`` name a folder: ``data=image_folder data.source=<folder>``, or
    ``data=audio_folder ...`` when the folder holds mostly audio files."""
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("data", "+data") and value and (os.sep in value or Path(value).is_dir()) and "," not in value:
            folder = Path(value).expanduser().resolve()
            out += [f"data={'audio_folder' if holds_audio(folder) else 'image_folder'}", f"data.source={folder}"]
        else:
            out.append(arg)
    return out


def main(argv: list[str]) -> int:
    """``discotok train [hydra overrides...]``."""
    sys.argv = ["discotok train", *rewrite_overrides(argv)]
    hydra_main()
    return 0
