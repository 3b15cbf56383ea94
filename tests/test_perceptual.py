"""Perceptual losses: LPIPS (VGG16, local weights) against torchmetrics' LPIPS, timm backbones, clear errors."""

from __future__ import annotations

import subprocess

import pytest
import timm
import torch
from safetensors.torch import save_file

from discotok.losses import LOSSES, LPIPS, MissingWeightsError
from discotok.losses.perceptual import VGG16_FILE, VGG16_STAGE_ENDS
from discotok.train.module import TokenizerModule
from tests.conftest import tiny_tokenizer_config
from tests.test_train_cli import DISCOTOK


@pytest.fixture(scope="module")
def lpips(vgg16_random_weights) -> LPIPS:
    return LPIPS(vgg16_random_weights)


def test_lpips_matches_torchmetrics_with_the_same_weights(lpips, vgg16_random_weights, photo_batch, monkeypatch):
    from torchmetrics.functional.image import lpips as tm
    from torchvision.models.vgg import cfgs, make_layers

    # torchmetrics builds a whole torchvision vgg16() for its .features; the same layers, built faster
    monkeypatch.setattr(tm, "_get_tv_model_features", lambda net, pretrained=False: make_layers(cfgs["D"]))
    oracle = tm._LPIPS(pretrained=True, net="vgg", pnet_rand=True).eval()  # its bundled lin layers
    state = torch.load(vgg16_random_weights, weights_only=True)
    starts = (0, *VGG16_STAGE_ENDS[:-1])
    for key, value in state.items():  # features.{i}.{param} -> net.slice{k}.{i}.{param}
        index = int(key.split(".")[1])
        stage = next(k for k, (a, b) in enumerate(zip(starts, VGG16_STAGE_ENDS)) if a <= index < b)
        oracle.state_dict()[f"net.slice{stage + 1}.{key.removeprefix('features.')}"].copy_(value)
    x, y = photo_batch[:3], photo_batch[3:6]
    expected = oracle(x, y, normalize=False).flatten()
    got = lpips(x, y)
    assert got.shape == (3,)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_lpips_is_zero_for_equal_images_positive_otherwise_and_differentiable(lpips, photo_batch):
    x, y = photo_batch[:2], photo_batch[2:4]
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    assert (lpips(x, y) > 0).all()
    x_hat = y.clone().requires_grad_(True)
    lpips(x_hat, x).sum().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in lpips.parameters())


def test_missing_vgg_weights_say_where_to_put_them(tmp_path):
    missing = tmp_path / "nowhere" / VGG16_FILE
    with pytest.raises(MissingWeightsError) as err:
        LPIPS(missing)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(missing) in message and VGG16_FILE in message
    assert "loss.perceptual.vgg_weights=" in message and "loss.perceptual.weight=0" in message


def test_a_training_run_with_lpips_stops_at_start_up_without_weights(tmp_path):
    loss = {"perceptual": {"name": "lpips", "weight": 1.0, "vgg_weights": str(tmp_path / VGG16_FILE)}}
    with pytest.raises(MissingWeightsError, match="does not exist"):
        TokenizerModule(tiny_tokenizer_config("fsq"), loss=loss)
    off = TokenizerModule(tiny_tokenizer_config("fsq"), loss={"perceptual": {**loss["perceptual"], "weight": 0.0}})
    assert len(off.perceptual) == 0


def test_discotok_train_stops_at_start_up_without_vgg_weights(tmp_path):
    missing = tmp_path / VGG16_FILE
    proc = subprocess.run(
        [*DISCOTOK, "train", "loss=vqgan", "experiment=smoke", f"loss.perceptual.vgg_weights={missing}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert f"discotok train: error: weights file '{missing}' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_lpips_weights_stay_out_of_checkpoints(vgg16_random_weights):
    loss = {"perceptual": {"name": "lpips", "weight": 1.0, "vgg_weights": str(vgg16_random_weights)}}
    module = TokenizerModule(tiny_tokenizer_config("fsq"), loss=loss)
    state = module.state_dict()
    assert not any(k.startswith("perceptual.") for k in state)
    before = module.perceptual[0].net.lins[0].weight.clone()
    module.load_state_dict(state, strict=True)
    assert torch.equal(module.perceptual[0].net.lins[0].weight, before)


@pytest.fixture(scope="module")
def convnext_file(tmp_path_factory):
    torch.manual_seed(0)
    model = timm.create_model("test_convnext", pretrained=False)
    path = tmp_path_factory.mktemp("timm") / "test_convnext.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


@pytest.mark.parametrize("output", ["features", "logits"])
def test_timm_perceptual_loads_local_weights(convnext_file, output, photo_batch):
    model, path = convnext_file
    loss = LOSSES.build({"name": "timm_perceptual", "model": "test_convnext", "weights": str(path), "output": output})
    assert torch.equal(loss.net.net.stem_0.weight if output == "features" else loss.net.net.stem[0].weight, model.stem[0].weight)
    x, y = photo_batch[:4], photo_batch[4:]
    same, parts = loss(x, x)
    assert same.item() == pytest.approx(0.0, abs=1e-6) and "timm_test_convnext" in parts
    x_hat = y.clone().requires_grad_(True)
    value, _ = loss(x_hat, x)
    value.backward()
    assert value > 0 and x_hat.grad.abs().sum() > 0


def test_timm_perceptual_missing_weights_and_bad_names(tmp_path, convnext_file):
    with pytest.raises(MissingWeightsError, match="timm/convnext_small"):
        LOSSES.build({"name": "timm_perceptual", "model": "convnext_small", "weights": str(tmp_path / "w.safetensors")})
    with pytest.raises(ValueError, match="not a timm model"):
        LOSSES.build({"name": "timm_perceptual", "model": "no_such_net", "weights": str(convnext_file[1])})
