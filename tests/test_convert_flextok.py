"""``discotok convert flextok``: FlexTok's safetensors (its Hydra config in the metadata, read as data) gives the ids
and reconstructions apple/ml-flextok's own code gave for the same weights, images and starting noise
(``tests/fixtures/flextok_small.safetensors``, made by ``tests/fixtures/make_flextok.py`` from the reference at
the commit it names): a KL-VAE of two levels, a 2-layer register encoder with a causal register mask, FSQ, and a
2-layer rectified-flow decoder with adaLN per part, nested dropout and a learned null condition, decoded from
prefixes of 1, 4 and 8 of the 8 tokens, without guidance, with classifier-free guidance and with FlexTok's
normalised guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.tokenizers import tokenizer_config
from discotok.train.run import config_dir, plain
from tests.fixtures.make_flextok import (
    COMMIT, FIXTURE, GUIDANCE, IMAGE_SIZE, PREFIXES, STEPS, checkpoint_metadata, fixture_input, fixture_noise,
    reference_state,
)


def reference() -> tuple[dict, dict, dict]:
    """The fixture's config, the regenerated tensors and the reference's outputs."""
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT and int(meta["steps"]) == STEPS
    return json.loads(meta["config"]), reference_state(json.loads(meta["shapes"])), load_file(str(FIXTURE))


def checkpoint(path: Path, config: dict, state: dict) -> Path:
    """``model.safetensors`` as FlexTok's ``save_safetensors`` writes it: tensors + the config in the metadata."""
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "model.safetensors"), metadata=checkpoint_metadata(config))
    return path / "model.safetensors"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Tokenizer, dict]:
    tmp = tmp_path_factory.mktemp("flextok")
    config, state, expected = reference()
    source = checkpoint(tmp / "hub", config, state)
    assert main(["convert", "flextok", str(source), "-o", str(tmp / "tok")]) == 0
    return Tokenizer.from_pretrained(tmp / "tok"), expected


@pytest.fixture(scope="module")
def guided(converted) -> dict[str, Tokenizer]:
    """The converted tokenizer with the decoder's ``guidance`` set to ``cfg`` and to ``apg`` (its default)."""
    tok, _ = converted
    config = json.loads(json.dumps(tok.config))
    config["decoder"]["guidance"] = "cfg"
    cfg = Tokenizer.from_config(config)
    cfg.load_state_dict(tok.state_dict())
    return {"cfg": cfg.eval(), "apg": tok}


def test_converted_flextok_gives_the_reference_ids(converted):
    tok, expected = converted
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids = tok.encode(x)
    assert torch.equal(ids, expected["ids"])
    assert ids.unique().numel() >= 16  # random weights, yet not a trivial comparison
    assert torch.equal(tok.encode(x, num_tokens=3), ids[:, :3])  # causal registers: a prefix runs alone
    assert tok.modality.num_tokens == 8 and tok.codebook_size == 1000


@pytest.mark.parametrize("k", PREFIXES)
def test_prefixes_decode_as_the_reference_decodes_them(converted, guided, k):
    _, expected = converted
    ids, noise = expected["ids"][:, :k], fixture_noise()
    assert torch.equal(noise, expected["noise"])
    for name, (scale, apg) in GUIDANCE.items():
        ours = guided["apg" if apg else "cfg"]
        reference_images = expected[f"reconstruction_{k}_{name}"]
        z_q = ours.quantizer.ids_to_codes(ids)
        raw = ours.decoder(z_q, ours.encoder.token_layout((IMAGE_SIZE, IMAGE_SIZE)), size=(IMAGE_SIZE, IMAGE_SIZE),
                           timesteps=STEPS, guidance_scale=scale, noise=noise)
        assert (raw - reference_images).abs().max() < 1e-4, name  # unclamped
        decoded = ours.decode(ids, size=(IMAGE_SIZE, IMAGE_SIZE), timesteps=STEPS, guidance_scale=scale, noise=noise)
        assert (decoded - reference_images.clamp(-1, 1)).abs().max() < 1e-4, name
        assert (reference_images.abs() < 1).float().mean() > 0.3  # clamping does not hide the comparison
    # the comparisons are not trivially true: prefixes and guidance change the images
    assert (expected[f"reconstruction_{k}_none"] - expected[f"reconstruction_{k}_apg"]).abs().max() > 1e-2
    assert (expected[f"reconstruction_{k}_cfg"] - expected[f"reconstruction_{k}_apg"]).abs().max() > 1e-2
    if k != PREFIXES[-1]:
        full = expected[f"reconstruction_{PREFIXES[-1]}_none"]
        assert (expected[f"reconstruction_{k}_none"] - full).abs().max() > 1e-2


def test_the_seed_draws_the_starting_noise(converted):
    tok, expected = converted
    ids = expected["ids"][:, :4]
    a = tok.decode(ids, size=(16, 16), timesteps=2, seed=5)
    assert torch.equal(a, tok.decode(ids, size=(16, 16), timesteps=2, seed=5))
    assert not torch.equal(a, tok.decode(ids, size=(16, 16), timesteps=2, seed=6))
    with pytest.raises(ValueError, match="noise must have shape"):
        tok.decode(ids, size=(16, 16), timesteps=2, noise=torch.zeros(3, 4, 4, 4))


def test_a_config_that_disagrees_with_the_weights_is_refused_with_both_shapes(tmp_path):
    config, state, _ = reference()
    config["regularizer"]["levels"] = [8, 5, 5, 5, 5]  # 5-d tokens, the weights' projections are 4-d
    with pytest.raises(ConvertError, match=r"\(64, 4\) \(expected \(64, 5\)\)"):
        convert("flextok", checkpoint(tmp_path, config, state))
    config, state, _ = reference()
    config["vae"]["latent_channels"] = 16
    with pytest.raises(ConvertError, match="latent_channels 16 disagree with the weights' 4"):
        convert("flextok", checkpoint(tmp_path / "vae", config, state))


def test_sources_of_another_format_are_refused_saying_what_was_expected(tmp_path):
    _, state, _ = reference()
    save_file(state, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ConvertError, match="metadata has no vae, encoder, decoder, regularizer.*expected a FlexTok"):
        convert("flextok", tmp_path / "plain.safetensors")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ConvertError, match="not a safetensors file.*expected a FlexTok"):
        convert("flextok", tmp_path / "model.pt")
    with pytest.raises(ConvertError, match="no such file"):
        convert("flextok", tmp_path / "absent.safetensors")


def test_the_config_is_read_as_data_and_never_run(tmp_path):
    config, state, _ = reference()
    sentinel = tmp_path / "ran"
    metadata = checkpoint_metadata(config)
    metadata["vae"] = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    save_file(state, str(tmp_path / "model.safetensors"), metadata=metadata)
    with pytest.raises(ConvertError, match="'vae' is not a config dict"):
        convert("flextok", tmp_path / "model.safetensors")
    assert not sentinel.exists()
    config["decoder"]["module_dict"]["dec_extra"] = {"_target_": "os.system", "command": f"touch {sentinel}"}
    with pytest.raises(ConvertError, match="'dec_extra' is a system, which discotok does not reproduce"):
        convert("flextok", checkpoint(tmp_path / "extra", config, state))
    assert not sentinel.exists()


def test_flextok_builds_from_its_configs_and_encodes_prefixes():
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = plain(compose("train", overrides=["encoder=flextok", "decoder=flextok", "quantizer=fsq",
                                                    "data.image_size=[32,32]"]))
    tok = Tokenizer.from_config(tokenizer_config(cfg["encoder"], cfg["quantizer"], cfg["decoder"], [32, 32]))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    ids = tok.encode(images)
    assert ids.shape == (2, cfg["encoder"]["num_tokens"])
    assert torch.equal(tok.encode(images, num_tokens=5), ids[:, :5])
    assert tok.decode(ids[:, :3], timesteps=2, guidance_scale=1.0).shape == images.shape
    tok.train()
    keep = tok.encoder(images).keep
    assert keep is not None and set(keep.tolist()) <= {1, 2, 4, 8, 16, 32}


def test_a_hub_folder_whose_config_json_holds_the_config_converts_the_same(tmp_path, converted):
    tok, expected = converted
    config, state, _ = reference()
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"config": config}))
    again = convert("flextok", folder)
    assert torch.equal(again.encode(expected["input"]), expected["ids"])
    assert again.config == tok.config
