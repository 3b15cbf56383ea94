"""``precision="int8"``: copies of the encoder and decoder with dynamic int8 linear layers (CPU), the
quantizer in float32; ids and quality against fp32, the model itself untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from discotok import Tokenizer
from discotok.nn.precision import resolve_precision
from tests.conftest import tiny_tokenizer_config
from tests.test_inference_precision import photo_crops, trained_vq

# A tiny ViT VQ tokenizer trained 120 steps: int8 (per-tensor weights, activations quantized per call) moves
# the latents by 0.6 % and changes the ids of the tokens nearest a boundary between two codes (measured: 0.990
# of the ids equal, PSNR -0.006 dB; a titok_tiny trained 300 steps, on 512 held-out wallpaper crops: 0.969,
# PSNR 15.318 vs 15.319 dB).
MIN_IDENTICAL = 0.95


@pytest.fixture(scope="module")
def vit() -> Tokenizer:
    return trained_vq("vit", 120)


def test_int8_runs_quantized_linear_layers_and_keeps_ids_and_quality(vit):
    x = photo_crops()
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    ids32, ids8 = vit.encode(x), vit.encode(x, precision="int8")
    encoder, decoder = vit._networks("int8")
    kinds = {type(m).__module__ for m in [*encoder.modules(), *decoder.modules()]}
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    latents32, latents8 = vit.encode_latents(x), vit.encode_latents(x, precision="int8")
    change = ((latents8 - latents32).norm() / latents32.norm()).item()
    assert 0 < change < 0.05, change  # really int8, and close
    same = (ids8 == ids32).float().mean().item()
    assert same >= MIN_IDENTICAL, f"only {same:.4f} of int8 ids equal fp32's"
    out8 = vit.decode(ids32, precision="int8")
    assert out8.dtype == torch.float32 and not torch.equal(out8, vit.decode(ids32))
    psnr = [10 * torch.log10(4 / F.mse_loss(vit.decode(ids, precision=p), x)) for ids, p in ((ids32, "fp32"), (ids8, "int8"))]
    assert abs(psnr[1] - psnr[0]) < 0.1, psnr
    assert all(torch.equal(v, state[k]) for k, v in vit.state_dict().items())  # the model itself is untouched
    assert torch.equal(vit.encode(x), ids32)


def test_int8_copies_follow_the_weights(vit):
    """Changing the weights (a training step, load_state_dict) makes new int8 copies."""
    tok = Tokenizer.from_config(vit.config)
    tok.load_state_dict(vit.state_dict())
    x = photo_crops(8)
    before = tok.encode_latents(x, precision="int8")
    first = tok._networks("int8")[0]
    with torch.no_grad():
        for p in tok.encoder.parameters():
            p.mul_(1.5)
    after = tok.encode_latents(x, precision="int8")
    assert tok._networks("int8")[0] is not first and not torch.allclose(before, after)
    assert tok._networks("int8")[0] is tok._networks("int8")[0]  # unchanged weights: the same copy


def test_int8_is_cpu_only_and_never_auto():
    assert resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(ValueError, match="int8 .* runs on the CPU only; the tokenizer is on cuda"):
        resolve_precision("int8", "cuda")
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")


def test_int8_says_so_when_a_network_has_no_linear_layer():
    tok = Tokenizer.from_config(tiny_tokenizer_config("fsq", encoder="patch")).eval()
    x = photo_crops(4)
    with pytest.warns(UserWarning, match="encoder 'patch' has none and runs in float32"):
        ids = tok.encode(x, precision="int8")
    assert torch.equal(ids, tok.encode(x))


def test_bench_precision_against_int8():
    from discotok.bench.precision import format_table, measure

    row = measure(["experiment=vit_tiny"], batch_size=2, repeats=1, against="int8")
    assert row["precision"] == "int8" and "train_ms_fp32" not in row  # int8 is inference only
    assert row["encode_speedup"] == pytest.approx(row["encode_ms_fp32"] / row["encode_ms_int8"])
    assert 0 <= row["ids_identical_vs_fp32"] <= 1 and "| int8 |" in format_table([row])
