"""``discotok convert titok`` of a TA-TiTok (text-aware TiTok): a hub directory gives the ids and, with the same text
guidance, the reconstruction that bytedance/1d-tokenizer's own ``TATiTok`` gave for the same weights and images
(``tests/fixtures/tatitok_small.safetensors``, made by ``tests/fixtures/make_tatitok.py`` from the reference at the
commit it names). Its decoder is conditioned: without a condition it says what it needs, and every path that has
none to give (``discotok decode``, training, ``discotok eval``) refuses or encodes only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.fixtures.make_tatitok import FIXTURE, PUBLISHED, TEXT, VARIANT, text_guidance
from tests.fixtures.make_titok import fixture_input
from tests.test_convert_titok import hub_folder, published_architecture

NEEDS = r"needs condition=\(B, 8, 16\), a CLIP text encoder's per-token features"


@pytest.fixture
def tatitok(tmp_path) -> Tokenizer:
    folder, _, _ = hub_folder(tmp_path, VARIANT, fixture=FIXTURE)
    return convert("titok", folder)


def test_converted_tatitok_gives_the_reference_ids_and_images(tmp_path, capsys):
    folder, config, _ = hub_folder(tmp_path, VARIANT, fixture=FIXTURE)
    expected = load_file(str(FIXTURE))
    assert main(["convert", "titok", str(folder), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x, text = fixture_input(), text_guidance()
    assert torch.equal(x, expected["input"]) and torch.equal(text, expected["text_guidance"])
    ids = tok.encode(x)
    assert torch.equal(ids, expected[f"{VARIANT}.ids"])
    assert ids.unique().numel() >= 10  # the comparison is not trivially true (random, non-zero codebooks)
    reference = expected[f"{VARIANT}.reconstruction"] * 2 - 1  # the reference gives [0, 1], discotok [-1, 1]
    assert (reference.abs() < 1).float().mean() > 0.3  # clamping does not hide the comparison
    assert (tok.decode(ids, condition=text) - reference.clamp(-1, 1)).abs().max() < 1e-4
    assert (tok(x, condition=text).x_hat - reference).abs().max() < 1e-4  # the unclamped forward pass too
    other = tok.decode(ids, condition=text_guidance(seed=3))
    assert (other - reference.clamp(-1, 1)).abs().max() > 0.1  # the text guidance takes part
    assert tok.decoder.conditioned and tok.decoder.text_shape == (8, 16)
    assert tok.modality.num_tokens == config["model"]["vq_model"]["num_latent_tokens"] == 16


def test_a_tatitok_decoder_needs_its_condition_and_a_titok_takes_none(tatitok, tmp_path):
    ids = tatitok.encode(fixture_input())
    with pytest.raises(ValueError, match=NEEDS):
        tatitok.decode(ids)
    with pytest.raises(ValueError, match=NEEDS):
        tatitok(fixture_input())
    with pytest.raises(ValueError, match=r"condition must have shape \(4, 8, 16\).*got \(4, 77, 768\)"):
        tatitok.decode(ids, condition=torch.zeros(4, 77, 768))
    titok = convert("titok", hub_folder(tmp_path, "single_stage")[0])
    assert not titok.decoder.conditioned
    with pytest.raises(ValueError, match="condition: only a conditioned decoder .* decoder 'titok' is not conditioned"):
        titok.decode(ids, condition=text_guidance())
    with pytest.raises(ValueError, match="is not conditioned"):
        titok(fixture_input(), condition=text_guidance())


def test_a_prefix_decodes_as_if_only_its_latents_were_given(tatitok):
    """``missing_tokens="drop"`` with the text guidance after the latents: k of 16 ids decode as a decoder of k
    latent positions does (its attention mask covers the text tokens too)."""
    ids, text, k = tatitok.encode(fixture_input()), text_guidance(), 5
    config = json.loads(json.dumps(tatitok.config))
    config["decoder"]["num_tokens"] = config["encoder"]["num_tokens"] = k
    short = Tokenizer.from_config(config)
    state = tatitok.state_dict()
    for name in ("encoder.latent_tokens", "encoder.latent_pos_embed", "decoder.latent_pos_embed"):
        state[name] = state[name][:, :k]
    short.load_state_dict(state, strict=True)
    prefix = tatitok.decode(ids[:, :k], condition=text)
    assert (prefix - short.decode(ids[:, :k], condition=text)).abs().max() < 1e-5
    assert (prefix - tatitok.decode(ids, condition=text)).abs().max() > 0.1


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_published_tatitok_architectures_convert_tensor_for_tensor(name):
    """TA-TiTok BL-32 / BL-64 / BL-128 VQ (no text sizes in their configs: the reference's 77 x 768)."""
    tok, config = published_architecture(name, FIXTURE)
    assert tok.decoder.conditioned and tok.decoder.text_shape == (77, 768)
    assert tok.modality.num_tokens == config["model"]["vq_model"]["num_latent_tokens"]
    assert tok.codebook_size == 8192 and tok.decoder.pixel_decoder is None and not tok.encoder.legacy_reshape


def test_wrong_or_damaged_tatitok_sources_are_refused(tmp_path):
    folder, config, state = hub_folder(tmp_path, VARIANT, fixture=FIXTURE)
    vq = config["model"]["vq_model"]

    def refused(changes: dict, match: str) -> None:
        (folder / "config.json").write_text(json.dumps(dict(config, model={"vq_model": {**vq, **changes}})))
        with pytest.raises(ConvertError, match=match):
            convert("titok", folder)

    refused({"quantize_mode": "vae"}, "quantize_mode 'vae' \\(a continuous TA-TiTok: not a discrete tokenizer\\)")
    refused({"text_embed_dim": 768},
            r"config.json says text_embed_dim 768 but decoder.text_guidance_proj.weight is \(192, 16\)")
    without = {k: v for k, v in vq.items() if k not in TEXT}  # the reference's defaults: 77 x 768
    (folder / "config.json").write_text(json.dumps(dict(config, model={"vq_model": without})))
    with pytest.raises(ConvertError, match="config.json says text_embed_dim 768"):
        convert("titok", folder)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v for k, v in state.items() if k != "decoder.text_guidance_proj.bias"}, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match="missing: decoder.text_proj.bias"):
        convert("titok", folder)
    positions = dict(state, **{"decoder.text_guidance_positional_embedding": torch.zeros(9, 192)})
    save_file(positions, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"text_context_length 8 but decoder.text_guidance_positional_embedding is "
                                           r"\(9, 192\)"):
        convert("titok", folder)
    plain = {k: v for k, v in state.items() if "text_guidance" not in k}
    save_file(plain, str(folder / "model.safetensors"))
    with pytest.raises(ConvertError, match="gives text_context_length / text_embed_dim \\(a TA-TiTok\\) but there is no"):
        convert("titok", folder)


def test_where_no_condition_can_be_given_a_tatitok_is_refused_or_encodes_only(tatitok, tmp_path, capsys):
    from discotok.io import ExtractError
    from discotok.extraction.decode import decode_ids
    from discotok.train.module import TokenizerModule

    tatitok.save_pretrained(tmp_path / "tok")
    np.save(tmp_path / "ids.npy", tatitok.encode(fixture_input()).numpy())
    with pytest.raises(ExtractError, match="needs condition=.*Tokenizer.decode\\(ids, condition=...\\)"):
        decode_ids(tatitok, tmp_path / "ids.npy", tmp_path / "decoded")
    assert main(["decode", str(tmp_path / "tok"), str(tmp_path / "ids.npy"), "-o", str(tmp_path / "out")]) != 0
    assert "needs condition=(B, 8, 16)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs condition=.*training and its validation do not give"):
        TokenizerModule(tatitok.config)


def test_discotok_eval_gives_a_tatitok_the_encode_only_rows_with_the_reason(tatitok, photo_batch, tmp_path, capsys):
    from PIL import Image

    tatitok.save_pretrained(tmp_path / "tatitok")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, x in enumerate(photo_batch[:4]):
        Image.fromarray(x.add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()).save(photos / f"{i}.png")
    rc = main(["eval", str(tmp_path / "tatitok"), str(photos), "-o", str(tmp_path / "report"), "--image-size", "32",
               "--no-fid", "--no-baselines", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tatitok: encoded only, not decoded: its decoder needs condition=(B, 8, 16)" in captured.err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    row, = report["results"]
    assert row["label"] == "full (encode only)" and "psnr" not in row and row["encode_images_per_s"] > 0
    assert "encodes only (its decoder needs condition=(B, 8, 16)" in report["protocol"]["coding"]["tatitok"]
    assert "rate_distortion" not in report["files"]  # nothing to plot
