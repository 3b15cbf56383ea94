"""``discotok convert titok``: a TiTok hub directory gives the ids and reconstruction that bytedance/1d-tokenizer's
own code gave for the same weights and images (``tests/fixtures/titok_small.safetensors``, made by
``tests/fixtures/make_titok.py`` from the reference at the commit it names): a two-stage model (legacy
latents, l2-normalised codebook, MaskGIT-VQGAN pixel decoder) and a single-stage one (encoder and decoder
of different widths, Euclidean codebook, pixel head)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.fixtures.make_titok import (COMMIT, FIXTURE, ONE_D_PIECE_COMMIT, ONE_D_PIECE_LENGTHS, PUBLISHED, VARIANTS,
                                       fixture_input, reference_state)

VARIANT_NAMES = sorted(VARIANTS)


def hub_folder(tmp_path: Path, variant: str, weights: str = "model.safetensors",
               fixture: Path = FIXTURE) -> tuple[Path, dict, dict]:
    """The ``fixture``'s variant as TiTok.save_pretrained writes it; its config and tensors."""
    with safe_open(str(fixture), framework="pt") as f:
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


def published_architecture(name: str, fixture: Path = FIXTURE) -> tuple[Tokenizer, dict]:
    """The converted architecture (on the meta device: no memory, no weights) of the published model ``name`` from
    its config and the reference's tensor shapes in ``fixture``, checked to have exactly those tensors; its config."""
    from discotok.convert.base import rename
    from discotok.convert.titok import OWN, folded, titok_config, titok_rules

    with safe_open(str(fixture), framework="pt") as f:
        meta = f.metadata()
    config = json.loads(meta[f"{name}.config"])
    state = {k: torch.empty(v, device="meta") for k, v in json.loads(meta[f"{name}.shapes"]).items()}
    ours = titok_config(config, state)
    with torch.device("meta"):
        tok = Tokenizer.from_config(ours)
    expected = {k: tuple(v.shape) for k, v in tok.state_dict().items() if not any(re.fullmatch(p, k) for p in OWN)}
    assert {k: tuple(v.shape) for k, v in rename(folded(state), titok_rules(ours)).items()} == expected
    return tok, config


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_published_architectures_convert_tensor_for_tensor(name):
    """TiTok-L-32 / B-64 / S-128 and the VQ-8k models convert to exactly the reference's tensors."""
    tok, config = published_architecture(name)
    vq = config["model"]["vq_model"]
    assert tok.config["image_size"] == [256, 256] and tok.modality.num_tokens == vq["num_latent_tokens"]
    assert (tok.encoder.legacy_reshape, tok.decoder.pixel_decoder is not None) == (vq["finetune_decoder"],) * 2
    assert tok.quantizer.cosine == vq["use_l2_norm"] and tok.codebook_size == vq["codebook_size"]
    width = tok.encoder.patch_embed.proj.out_channels
    assert tok.encoder.transformer.blocks[0].attn.num_heads == {512: 8, 768: 12, 1024: 16}[width]


def test_a_converted_one_d_piece_decodes_prefixes_as_its_reference(tmp_path):
    """One-D-Piece (a TiTok trained to decode any prefix) converts as it is; a prefix of k ids decodes as its
    reference's ``decode(z, length=k)``: the missing latents take no part (``missing_tokens="drop"``)."""
    folder, _, _ = hub_folder(tmp_path, "two_stage")
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["one_d_piece.commit"] == ONE_D_PIECE_COMMIT
    (folder / "config.json").write_text(meta["one_d_piece.config"])
    tok, expected = convert("titok", folder), load_file(str(FIXTURE))
    ids = tok.encode(fixture_input())
    assert torch.equal(ids, expected["one_d_piece.ids"])
    decoded = {}
    for k in ONE_D_PIECE_LENGTHS:
        reference = (expected[f"one_d_piece.reconstruction.{k}"] * 2 - 1).clamp(-1, 1)
        decoded[k] = tok.decode(ids[:, :k])
        assert (decoded[k] - reference).abs().max() < 1e-4, k
    assert (decoded[1] - decoded[16]).abs().max() > 0.1  # the prefixes decode differently


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
    says = r"config.json says codebook_size 4096 but quantize.embedding.weight is \(64, 8\)"
    with pytest.raises(ConvertError, match=says):
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
    with pytest.raises(ConvertError, match="no config.json; expected a TiTok"):
        convert("titok", tmp_path / "vq_ds16_c2i.pt")


def test_a_hub_name_converts_once_offline(tmp_path):
    """``Tokenizer.from_pretrained("org/name")`` of a TiTok hub repository (config.json + model.safetensors, told
    apart from a transformers one by its content) converts it, in a local Hugging Face cache (offline)."""
    import os
    import subprocess
    import sys

    from tests.test_hub import cache_repo

    folder, _, _ = hub_folder(tmp_path, "two_stage")
    cache_repo(tmp_path / "hf" / "hub", "titok-test/tokenizer_titok_small",
               {name: folder / name for name in ("config.json", "model.safetensors")}, "d" * 40)
    probe = ("import json, torch; from discotok import Tokenizer; from tests.fixtures.make_titok import fixture_input; "
             "print(json.dumps(Tokenizer.from_pretrained('titok-test/tokenizer_titok_small').encode(fixture_input()).tolist()))")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "converting titok-test/tokenizer_titok_small (titok: config.json)" in proc.stderr
    ids = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert torch.equal(ids, load_file(str(FIXTURE))["two_stage.ids"])


def test_two_training_steps_from_a_converted_titok(tmp_path):
    from tests.finetuning import moved_from, two_steps

    folder, _, _ = hub_folder(tmp_path, "two_stage")
    start = convert("titok", folder, tmp_path / "tok")
    _, tuned = two_steps(tmp_path / "tok", tmp_path / "run", "experiment=titok_tiny", "data.image_size=[32,32]")
    moved = moved_from(start, tuned)
    assert any(k.startswith("decoder.pixel_decoder.") for k in moved), "the pixel decoder did not train"


def test_the_maskgit_vqgan_decoder_trains_from_scratch():
    """The pixel decoder is a component of its own: a grid decoder for a taming encoder, with or without soft codes."""
    from discotok.layout import Layout
    from discotok.registry import DECODERS
    from discotok.tokenizers import tokenizer_config

    spec = {"name": "maskgit_vqgan", "latent_dim": 8, "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1}
    tok = Tokenizer.from_config(tokenizer_config(
        {"name": "taming", "latent_dim": 8, "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1},
        {"name": "vq", "dim": 8, "codebook_size": 16, "kmeans_init": False}, spec, image_size=[16, 16]))
    x = fixture_input()[:, :, :16, :16]
    out = tok(x)
    assert out.x_hat.shape == x.shape
    out.x_hat.square().mean().backward()
    assert tok.decoder.conv_in.weight.grad.abs().sum() > 0 and tok.encoder.conv_in.weight.grad.abs().sum() > 0
    soft = DECODERS.build({**spec, "soft_codes": 5})
    logits = torch.randn(2, 16, 5)
    pixels = soft(logits, Layout("grid", (4, 4)))
    assert pixels.shape == (2, 3, 8, 8)
    hard = soft(logits * 1e4, Layout("grid", (4, 4)))  # saturated logits pick one code each
    codes = soft.codebook[logits.argmax(-1)]
    soft.codebook = None
    assert (hard - soft(codes, Layout("grid", (4, 4)))).abs().max() < 1e-5
