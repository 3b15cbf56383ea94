"""Inference precision (fp32 / bf16 / auto) of encode and decode, its CLI options and eval figures;
bf16-mixed training on CPU with the quantizer's math in float32."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from discotok import Tokenizer
from discotok.cli import main
from discotok.data.images import load_image_tensor, pil_to_tensor, resize_center_crop, tensor_to_pil
from discotok.data.sample import load_sample_photos
from discotok.eval.run import evaluate
from discotok.extraction import ExtractError, extract
from discotok.nn import precision as precision_module
from discotok.nn.precision import resolve_precision
from discotok.quantizers import QUANTIZERS
from discotok.train.run import config_dir, train
from tests.conftest import tiny_tokenizer_config
from tests.test_train_cli import check_run_dir

# A trained VQ tokenizer gives bf16 ids equal to fp32 ones except where a latent lies within bf16's
# rounding (about 2^-8 relative) of the boundary between two codes. On this tiny model, trained on
# real crops, fewer than 2 % of tokens lie that close (the trained default: under 1 %, see
# docs/benchmarks/precision.md); an encoder or projection running in bf16 end to end, or a
# search in bf16, gives far lower agreement.
MIN_IDENTICAL = 0.98


def photo_crops(count: int = 48) -> torch.Tensor:
    """``count`` 32x32 crops in [-1, 1]: scikit-image's photos at two scales, four corners each."""
    crops = []
    for short_side in (64, 96):
        for img in load_sample_photos(short_side=short_side):
            t = pil_to_tensor(resize_center_crop(img, (short_side, short_side)))
            crops += [t[:, :32, :32], t[:, -32:, -32:], t[:, :32, -32:], t[:, -32:, :32]]
    return torch.stack(crops[:count])


def trained_vq(encoder: str, steps: int) -> Tokenizer:
    """A tiny ``encoder`` VQ tokenizer (64 cosine codes of 4 dims) trained for ``steps`` seeded steps on photo crops."""
    torch.manual_seed(0)
    config = tiny_tokenizer_config("vq", encoder=encoder)
    config["quantizer"] |= {"codebook_size": 64, "code_dim": 4, "cosine": True, "ema": True}
    tok = Tokenizer.from_config(config)
    x = photo_crops()
    opt = torch.optim.AdamW(tok.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = x[torch.randperm(x.shape[0], generator=generator)[:16]]
        out = tok(batch)
        loss = F.mse_loss(out.x_hat, batch) + out.quantized.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tok.eval()


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    """A tiny grid VQ tokenizer trained for 150 steps."""
    return trained_vq("grid", 150)


def test_precision_is_checked_with_the_allowed_values(trained):
    x = photo_crops(2)
    with pytest.raises(ValueError, match="fp32, bf16, int8, auto.*'fp16'"):
        trained.encode(x, precision="fp16")
    ids = trained.encode(x)
    with pytest.raises(ValueError, match="fp32, bf16, int8, auto.*'half'"):
        trained.decode(ids, precision="half")
    with pytest.raises(ValueError, match="fp32, bf16, int8, auto"):
        trained.encode_latents(x, precision="float16")


def test_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert resolve_precision("auto", "cpu") == "fp32"  # AVX-512 BF16 without AMX measured slower than fp32
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16", "amx_tile"}))
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_fp32_path_is_plain_float32(trained):
    """The default runs no autocast: ids and images equal the modules' own float32 computation."""
    x = photo_crops(8)
    with torch.no_grad():
        by_hand = trained.quantizer(trained.encoder(x).z).ids
    ids = trained.encode(x)
    assert torch.equal(ids, by_hand) and torch.equal(trained.encode(x, precision="fp32"), ids)
    with torch.no_grad():
        image = trained.decoder(trained.quantizer.ids_to_codes(ids), trained.modality.default_layout()).clamp(-1, 1)
    assert torch.equal(trained.decode(ids), image)
    assert copy.deepcopy(trained).double().decode(ids).dtype == torch.float64  # fp32 casts nothing


def test_bf16_ids_agree_with_fp32_and_decode_gives_float32(trained):
    x = photo_crops()
    ids32, ids16 = trained.encode(x), trained.encode(x, precision="bf16")
    assert ids16.dtype == torch.int64
    same = (ids16 == ids32).float().mean().item()
    assert same >= MIN_IDENTICAL, f"only {same:.4f} of bf16 ids equal fp32's"
    for precision in ("fp32", "bf16", "auto"):
        assert trained.decode(ids32, precision=precision).dtype == torch.float32
    assert trained.encode_latents(x, precision="bf16").dtype == torch.float32
    psnr = [10 * torch.log10(4 / F.mse_loss(trained.decode(ids32, precision=p), x)) for p in ("fp32", "bf16")]
    assert abs(psnr[1] - psnr[0]) < 0.05, psnr


def test_quantizer_projection_runs_in_float32_under_autocast():
    """A projection to the code dim (dim != code_dim) sees the latents in float32, so autocast does not
    move the search's input: ids under bf16 autocast equal those of the same input without it."""
    torch.manual_seed(0)
    quantizer = QUANTIZERS.build({"name": "vq", "dim": 16, "codebook_size": 256, "code_dim": 4, "cosine": True}).eval()
    z = torch.randn(8, 64, 16)
    expected = quantizer(z).ids
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
    assert torch.equal(out.ids, expected)
    assert out.z_q.dtype == torch.bfloat16  # project_out stays under the caller's autocast


def test_cli_takes_precision_and_refuses_others(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i, t in enumerate(photo_crops(6)):
        tensor_to_pil(t).save(images / f"{i}.png")
    tok_dir = trained.save_pretrained(tmp_path / "tok")
    assert main(["encode", str(tok_dir), str(images), "-o", str(tmp_path / "ids"), "--precision", "fp16",
                 "--no-progress", "--workers", "0"]) == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    with pytest.raises(ExtractError, match="precision.*fp32, bf16, int8, auto"):
        extract(tok_dir, images, tmp_path / "ids", precision="fp16", workers=0, progress=False)
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"ids_{precision}"
        assert main(["encode", str(tok_dir), str(images), "-o", str(out), "--precision", precision,
                     "--no-progress", "--workers", "0"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["encode_options"] == ({} if precision == "fp32" else {"precision": "bf16"})
        assert main(["decode", str(tok_dir), str(out), "-o", str(tmp_path / f"png_{precision}"), "--precision",
                     precision, "--no-progress"]) == 0
    fp32 = json.loads((tmp_path / "ids_fp32" / "manifest.json").read_text())
    assert fp32["encode_options"] == {}  # fp32 runs record nothing new: their manifests and resumes are as before
    pngs = sorted((tmp_path / "png_bf16").iterdir())
    assert len(pngs) == 6 and load_image_tensor(pngs[0], (32, 32)).shape == (3, 32, 32)


def test_eval_reports_bf16_against_fp32(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    crops = photo_crops(12)
    for i, t in enumerate(crops):
        tensor_to_pil(t).save(images / f"{i:02d}.png")
    report = evaluate([trained], images, tmp_path / "out", fid=False, precision="bf16", progress=False)
    row = report["results"][0]
    assert row["precision"] == "bf16"
    x = torch.stack([load_image_tensor(str(p), (32, 32)) for p in sorted(images.iterdir())])
    ids32, ids16 = trained.encode(x), trained.encode(x, precision="bf16")
    assert row["ids_identical_vs_fp32"] == pytest.approx((ids32 == ids16).float().mean().item())
    assert row["psnr_change_vs_fp32"] == pytest.approx(row["psnr"] - row["psnr_fp32"])
    fp32 = evaluate([trained], images, tmp_path / "out32", fid=False, progress=False)["results"][0]
    assert row["psnr_fp32"] == pytest.approx(fp32["psnr"], abs=1e-6)
    assert "ids_identical_vs_fp32" not in fp32 and fp32["precision"] == "fp32"
    assert "ids = fp32" in (tmp_path / "out" / "report.md").read_text()


def test_bf16_mixed_training_on_cpu_keeps_quantizer_math_float32(tmp_path, monkeypatch):
    """``trainer=cpu_bf16``: two steps of the default recipe; inside the quantizer autocast is off and the
    search gets float32, while the encoder around it ran in bf16."""
    from discotok.quantizers.search import CodeSearch

    seen = []
    nearest = CodeSearch.nearest

    def spy(self, x, codebook, cosine=False):
        seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
        return nearest(self, x, codebook, cosine)

    monkeypatch.setattr(CodeSearch, "nearest", spy)
    encoder_dtypes = []
    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=[
            "trainer=cpu_bf16", "quantizer=vq", "trainer.max_steps=2", "trainer.val_check_interval=2", "data.batch_size=4",
            "data.val_samples=4", "trainer.enable_progress_bar=false", f"+output_dir={run_dir}",
        ])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "cpu"

    class EncoderDtype:
        def on_train_start(self, trainer, module) -> None:
            module.tokenizer.encoder.register_forward_hook(lambda m, i, o: encoder_dtypes.append(o.z.dtype))

    import lightning as L

    summary = train(cfg, callbacks=[type("Spy", (L.Callback,), {"on_train_start": EncoderDtype.on_train_start})()])
    check_run_dir(run_dir, "vq", steps=2, hydra=False)
    assert summary["steps"] == 2
    assert torch.bfloat16 in encoder_dtypes  # the encoder did run under bf16 autocast
    assert seen and all(dtype == torch.float32 and not autocast for dtype, autocast in seen), seen


def test_bench_precision_compares_on_the_same_inputs():
    """``discotok bench precision``'s agreement and quality figures are those of the two precisions' outputs."""
    from discotok.bench.precision import format_table, measure
    from discotok.bench.tokenizer import compose_tokenizer
    from discotok.metrics.image import psnr

    row = measure(["experiment=smoke"], batch_size=2, repeats=1, train=False)
    tok = compose_tokenizer(["experiment=smoke"]).eval()
    x, _ = tok.modality.bench_input(2, 2.0)
    ids = {p: tok.encode(x, precision=p) for p in ("fp32", "bf16")}
    assert row["ids_identical_vs_fp32"] == pytest.approx((ids["fp32"] == ids["bf16"]).float().mean().item())
    fp32 = psnr(tok.decode(ids["fp32"], precision="fp32"), x).mean().item()
    assert row["psnr_fp32"] == pytest.approx(fp32, abs=1e-4)
    assert row["encode_speedup"] == pytest.approx(row["encode_ms_fp32"] / row["encode_ms_bf16"])
    assert "train_ms_fp32" not in row and "ids = fp32" in format_table([row])
