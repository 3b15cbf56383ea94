"""``discotok convert titok``: a TiTok hub directory gives the ids and reconstruction that bytedance/1d-tokenizer's
own code gave for the same weights and images (``tests/fixtures/titok_small.safetensors``, made by
``tests/fixtures/make_titok.py`` from the reference at the commit it names): a two-stage model (legacy
latents, l2-normalised codebook, MaskGIT-VQGAN pixel decoder) and a single-stage one (encoder and decoder
of different widths, Euclidean codebook, pixel head)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.fixtures.make_titok import COMMIT, FIXTURE, VARIANTS, fixture_input, reference_state

VARIANT_NAMES = sorted(VARIANTS)


def hub_folder(tmp_path: Path, variant: str, weights: str = "model.safetensors") -> tuple[Path, dict, dict]:
    """The fixture's variant as TiTok.save_pretrained writes it; its config and tensors."""
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT
    config, state = json.loads(meta[f"{variant}.config"]), reference_state(json.loads(meta[f"{variant}.shapes"]))
    folder = tmp_path / variant
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    if weights == "model.safetensors":
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder, config, state


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_converted_titok_gives_the_reference_ids_and_images(variant, tmp_path, capsys):
    folder, config, _ = hub_folder(tmp_path, variant)
    expected = load_file(str(FIXTURE))
    assert main(["convert", "titok", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids = tok.encode(x)
    assert torch.equal(ids, expected[f"{variant}.ids"])
    assert ids.unique().numel() >= 16  # the comparison is not trivially true (random, non-zero codebooks)
    reference = expected[f"{variant}.reconstruction"] * 2 - 1  # the reference gives [0, 1], discotok [-1, 1]
    inside = (reference.abs() < 1).float().mean()
    assert inside > 0.3  # clamping does not hide the comparison
    assert (tok.decode(ids) - reference.clamp(-1, 1)).abs().max() < 1e-4
    assert (tok(x).x_hat - reference).abs().max() < 1e-4  # the unclamped forward pass too
    assert tok.modality.num_tokens == config["model"]["vq_model"]["num_latent_tokens"] == 16
    assert tok.config["image_size"] == [32, 32]


def test_a_checkpoint_read_from_pytorch_model_bin_gives_the_same_tokenizer(tmp_path):
    folder, _, _ = hub_folder(tmp_path, "two_stage", "pytorch_model.bin")
    ids = convert("titok", folder).encode(fixture_input())
    assert torch.equal(ids, load_file(str(FIXTURE))["two_stage.ids"])


def test_the_legacy_reshape_and_the_value_range_matter(tmp_path):
    """Each TiTok-specific setting the converter writes changes the ids: the test above would catch its loss."""
    folder, _, _ = hub_folder(tmp_path, "two_stage")
    tok = convert("titok", folder)
    x, expected = fixture_input(), load_file(str(FIXTURE))["two_stage.ids"]
    for role, option, value in (("encoder", "legacy_reshape", False), ("encoder", "pixel_range", [-1.0, 1.0]),
                                ("encoder", "class_token", False)):
        config = json.loads(json.dumps(tok.config))
        config[role][option] = value
        changed = Tokenizer.from_config(config)
        changed.load_state_dict(tok.state_dict(), strict=False)
        assert not torch.equal(changed.encode(x), expected), option


def test_wrong_or_damaged_titok_sources_are_refused(tmp_path):
    folder, config, state = hub_folder(tmp_path, "two_stage")
    bad = dict(config, model={"vq_model": dict(config["model"]["vq_model"], codebook_size=4096)})
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ConvertError, match=r"config.json says codebook_size 4096 but quantize.embedding.weight is \(64, 8\)"):
        convert("titok", folder)
    (folder / "config.json").write_text(json.dumps(config))
    del state["pixel_decoder.conv_in.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match="missing: decoder.pixel_decoder.conv_in.bias"):
        convert("titok", folder)
    stage1 = dict(config, model={"vq_model": dict(config["model"]["vq_model"], finetune_decoder=False)})
    (folder / "config.json").write_text(json.dumps(stage1))
    with pytest.raises(ConvertError, match="stage-1 model"):
        convert("titok", folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "encodec"}))
    with pytest.raises(ConvertError, match="not a TiTok config.json"):
        convert("titok", folder)
    torch.save({"model": {}}, tmp_path / "vq_ds16_c2i.pt")  # a LlamaGen checkpoint
    with pytest.raises(ConvertError, match="no readable config.json"):
        convert("titok", tmp_path / "vq_ds16_c2i.pt")


def test_a_hub_folder_is_told_from_a_transformers_one(tmp_path):
    from discotok.tokenizers.hub import publisher_checkpoint

    folder, _, _ = hub_folder(tmp_path, "single_stage")
    assert publisher_checkpoint(folder) == ("titok", folder / "config.json")
