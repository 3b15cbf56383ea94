"""Post-training quantization (TokenBridge-style): the continuous ``identity`` quantizer, the fitted
per-dimension ``scalar`` quantizer, and ``discotok quantize-after``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from discotok import Tokenizer
from discotok.cli import main
from discotok.metrics import psnr
from discotok.quantize_after import quantize_after
from discotok.quantizers import QUANTIZERS
from discotok.quantizers.identity import ContinuousTokensError
from discotok.quantizers.scalar import ScalarQuantizer
from discotok.train.module import TokenizerModule
from tests.conftest import tiny_tokenizer_config


def skewed_latents(n: int = 4000, dim: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.randn(n, 1, generator=g) * 3 + 1, torch.rand(n, 1, generator=g) * 0.1,
                      torch.randn(n, dim - 2, generator=g).exp()], dim=1)


@pytest.mark.parametrize("method", ["lloyd", "quantile", "uniform"])
def test_scalar_ids_and_codes_round_trip_after_a_fit(method):
    q = ScalarQuantizer(3, [4, 5, 3])
    latents = skewed_latents()
    q.fit(latents, method)
    out = q(latents[None])
    assert out.ids.min() >= 0 and out.ids.max() < q.codebook_size == 4 * 5 * 3
    assert torch.equal(q.ids_to_codes(out.ids), out.z_q)  # ids -> codes gives exactly the quantized values
    every = torch.arange(q.codebook_size)[None]
    assert torch.equal(q(q.ids_to_codes(every)).ids, every)  # codes -> ids: each code is its own id
    assert q.ids_to_codes(every)[0].unique(dim=0).shape[0] == q.codebook_size  # distinct codes


@pytest.mark.parametrize("method", ["lloyd", "quantile", "uniform"])
def test_fitted_levels_lie_within_the_data_range_and_beat_the_uniform_grid(method):
    q = ScalarQuantizer(3, [8])
    latents = skewed_latents()
    errors = q.fit(latents, method)
    lo, hi = latents.min(0).values, latents.max(0).values
    for d in range(3):
        centers, boundaries = q.centers[d], q.boundaries[d]
        assert (centers >= lo[d]).all() and (centers <= hi[d]).all(), d
        assert (boundaries[1:] > boundaries[:-1]).all() and (centers[1:] > centers[:-1]).all()
    assert errors["mse_after"] < 0.5 * errors["mse_before"]  # the [-1, 1] grid fits these latents badly


def test_lloyd_max_error_is_at_most_the_quantile_start():
    latents = skewed_latents()
    errors = {m: ScalarQuantizer(3, [6]).fit(latents, m)["mse_after"] for m in ("quantile", "lloyd")}
    assert errors["lloyd"] <= errors["quantile"] + 1e-9


def test_scalar_refuses_bad_levels_and_latents():
    with pytest.raises(ValueError, match="one per dimension"):
        ScalarQuantizer(3, [4, 4])
    with pytest.raises(ValueError, match="NaN"):
        ScalarQuantizer(2, [4]).fit(torch.tensor([[0.0, float("nan")]] * 8))
    with pytest.raises(ValueError, match="fit method"):
        ScalarQuantizer(2, [4]).fit(torch.zeros(8, 2), "kmeans")


def identity_config() -> dict:
    return tiny_tokenizer_config("fsq") | {"quantizer": {"name": "identity", "dim": 8, "noise_std": 0.1, "l2_weight": 0.01}}


def test_identity_passes_latents_through_and_refuses_ids(photo_batch):
    tok = Tokenizer.from_config(identity_config()).eval()
    out = tok(photo_batch[:2])
    assert torch.equal(out.quantized.z_q, out.z) and out.ids.shape[-1] == 0
    assert out.quantized.loss.item() == pytest.approx(0.01 * out.z.pow(2).mean().item())
    tok.train()
    assert not torch.equal(tok(photo_batch[:2]).quantized.z_q, tok(photo_batch[:2]).z)  # training noise
    tok.eval()
    for call in (lambda: tok.encode(photo_batch[:1]), lambda: tok.decode(torch.zeros(1, 16, dtype=torch.long))):
        with pytest.raises(ContinuousTokensError, match="quantize-after"):
            call()
    assert tok.encode_latents(photo_batch[:2]).shape == (2, 16, 8)


@pytest.fixture(scope="module")
def continuous_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("continuous") / "tok"
    Tokenizer.from_config(identity_config()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, photo_batch) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(photo_batch):
        save_image(image.add(1).div(2), folder / f"{i}.png")
    (folder / "broken.png").write_text("not an image")
    return folder


def test_quantize_after_writes_a_discrete_tokenizer_that_encodes_and_decodes(continuous_dir, image_folder, photo_batch):
    out = continuous_dir.parent / "discrete"
    record = quantize_after(continuous_dir, str(image_folder), out, levels=[16])
    assert record["images"] == 8 and record["latents"] == 8 * 16 and len(record["skipped"]) == 1
    assert record["quantization_mse"] < record["uniform_grid_mse"]
    config = json.loads((out / "config.json").read_text())
    assert config["quantizer"] == {"name": "scalar", "dim": 8, "levels": [16] * 8}
    assert config["metadata"]["post_training_quantization"]["method"] == "lloyd"
    assert {"quantizer.centers", "quantizer.boundaries"} <= set(load_file(out / "model.safetensors"))
    discrete, continuous = Tokenizer.from_pretrained(out), Tokenizer.from_pretrained(continuous_dir)
    ids = discrete.encode(photo_batch)
    assert ids.shape == (8, 16) and ids.max() < discrete.codebook_size == 16**8
    decoded = discrete.decode(ids)
    assert decoded.shape == photo_batch.shape
    with torch.no_grad():
        reference = continuous(photo_batch).x_hat.clamp(-1, 1)
    assert psnr(decoded, reference).mean() > 25  # 16 levels per dimension: close to the continuous decode
    for part in ("encoder", "decoder"):  # the same weights, no retraining
        theirs = getattr(continuous, part).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in getattr(discrete, part).state_dict().items())


def test_quantize_after_command_and_its_errors(continuous_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "q"
    argv = ["quantize-after", str(continuous_dir), f"data={image_folder}", "-o", str(out), "--levels", "4",
            "--method", "quantile", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "levels: [4, 4, 4, 4, 4, 4, 4, 4]" in printed.out and "broken.png" in printed.err
    assert Tokenizer.from_pretrained(out).codebook_size == 4**8
    assert main(argv) == 1 and "already holds a tokenizer" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    discrete = tmp_path / "discrete"
    Tokenizer.from_config(tiny_tokenizer_config("fsq")).save_pretrained(discrete)
    assert main(["quantize-after", str(discrete), f"data={image_folder}", "-o", str(tmp_path / "x")]) == 1
    assert "quantizer=identity" in capsys.readouterr().err
    assert main(["quantize-after", str(continuous_dir), str(image_folder)]) == 1
    assert "data=SOURCE" in capsys.readouterr().err


def test_identity_config_group_builds():
    q = QUANTIZERS.build({"name": "identity", "dim": 4})
    assert getattr(q, "continuous", False) and q(torch.ones(1, 2, 4)).z_q.sum() == 8


def test_module_trains_and_validates_a_continuous_tokenizer(photo_batch, tmp_path):
    module = TokenizerModule(identity_config(), optim={"warmup_steps": 1})
    loader = DataLoader(photo_batch, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.validate(module, loader, verbose=False)[0]
    assert metrics["val/psnr"] > 0 and "val/usage" not in metrics


@pytest.mark.slow
def test_train_continuous_then_quantize_after_from_the_command_line(tmp_path):
    """``discotok train quantizer=identity`` then ``discotok quantize-after RUN/tokenizer data=sample_photos``."""
    from tests.test_train_cli import DISCOTOK, run_train

    run_train("experiment=smoke", "quantizer=identity", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["quantizer"] == "identity" and summary["continuous_dim"] == 16 and summary["val_psnr_db"] > 0
    assert "val_codebook_usage" not in summary and not (tmp_path / "run" / "codebook_usage.png").exists()
    proc = subprocess.run([*DISCOTOK, "quantize-after", str(tmp_path / "run" / "tokenizer"), "data=sample_photos",
                           "--num-images", "16", "--levels", "8", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tok = Tokenizer.from_pretrained(tmp_path / "run" / "tokenizer-quantized")
    assert tok.codebook_size == 8**16 and tok.decode(tok.encode(torch.zeros(1, 3, 32, 32))).shape == (1, 3, 32, 32)
