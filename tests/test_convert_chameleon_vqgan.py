"""``discotok convert chameleon``: Meta's ``vqgan.ckpt`` + ``vqgan.yaml`` give the ids, reconstruction and
preprocessing that facebookresearch/chameleon's own code gave (``tests/fixtures/chameleon_small/``, made by
``tests/fixtures/make_chameleon.py`` at the commit it names); the same weights in transformers' layout give the
same ids; a yaml the weights disagree with, and files of other formats, are refused with the reason."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.extraction.sources import SourceItem
from discotok.layout import Layout
from discotok.registry import ConfigError
from discotok.tokenizers.config import validate_config
from tests.fixtures.make_chameleon import ARCHITECTURE, COMMIT, FOLDER, REPOSITORY, SIZE


@pytest.fixture(scope="module")
def expected() -> dict:
    with safe_open(str(FOLDER / "reference.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert (meta["repository"], meta["commit"]) == (REPOSITORY, COMMIT)
    return load_file(str(FOLDER / "reference.safetensors"))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return convert("chameleon", FOLDER)


def copy_release(tmp_path, **changes) -> "Path":  # noqa: F821
    """The fixture's folder copied, its yaml's ``model.params.ddconfig`` (or ``model.params``) keys changed."""
    folder = tmp_path / "tokenizer"
    shutil.copytree(FOLDER, folder)
    config = yaml.safe_load((folder / "vqgan.yaml").read_text())
    params = config["model"]["params"]
    for key, value in changes.items():
        (params if key in params else params["ddconfig"])[key] = value
    (folder / "vqgan.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_converted_chameleon_gives_the_reference_ids_and_images(tmp_path, capsys, expected):
    assert main(["convert", "chameleon", str(FOLDER / "vqgan.ckpt"), "-o", str(tmp_path / "tok")]) == 0, \
        capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    ids, layout = tok.encode(expected["input"], return_layout=True)
    assert layout == Layout("grid", (8, 8))
    assert ids.unique().numel() >= 40  # of 128 tokens and 64 codes
    assert torch.equal(ids, expected["ids"])
    with torch.no_grad():
        raw = tok.decoder(tok.quantizer.ids_to_codes(ids), layout)  # before the [-1, 1] clamp
    assert (raw - expected["reconstruction"]).abs().max() < 1e-4
    assert (tok.decode(ids, layout) - expected["reconstruction"].clamp(-1, 1)).abs().max() < 1e-4
    config = tok.config
    assert config["image_size"] == [512, 512] and tok.codebook_size == ARCHITECTURE["n_embed"]
    assert config["preprocessing"] == {"resize_filter": "lanczos", "alpha_blend": "floor"}
    assert (config["encoder"]["attn_levels"], config["decoder"]["attn_levels"]) == ([0], [0])  # resolution 32 only
    q = config["quantizer"]
    assert (q["cosine"], q["dot_product"], q["projections"], q["code_dim"]) == (False, False, True, 6)
    assert config["metadata"]["ignored"] == {"loss (discriminator, perceptual network)": 2}


def test_the_reader_applies_chameleons_preprocessing(tmp_path, tok, expected):
    """The image files (an RGBA one, a photo) read as ``discotok encode`` reads them give the reference's input."""
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(expected[f"png_{i}"].numpy().tobytes())
    reader = tok.modality.reader(image_size=SIZE)
    x, _ = reader.collate([reader.load(SourceItem(str(p), str(p)))[0] for p in paths])
    assert (x - expected["input"]).abs().max() < 1e-6
    assert torch.equal(tok.encode(x), expected["ids"])
    assert reader.describe()["preprocessing"]["publisher"] == {"resize_filter": "lanczos", "alpha_blend": "floor"}
    ours = Tokenizer.from_config({k: v for k, v in tok.config.items() if k != "preprocessing"}).modality.reader(
        image_size=SIZE)  # bicubic, rounded blending: not the reference's input
    theirs = torch.stack([ours.load(SourceItem(str(p), str(p)))[0] for p in paths])
    assert (ours.collate(list(theirs))[0] - expected["input"]).abs().amax(dim=(1, 2, 3)).min() > 0.01
    with pytest.raises(ConfigError, match="'preprocessing': resize_filter must be one of"):
        validate_config({**tok.config, "preprocessing": {"resize_filter": "cubic"}})


def test_transformers_layout_of_the_same_weights_gives_the_same_ids(tmp_path, tok, expected):
    """transformers' ChameleonVQVAE has exactly the publisher's encoder, quant_conv and codebook tensors (names and
    shapes); loaded with them it gives the reference's ids, and so does ``discotok convert transformers``."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    a = ARCHITECTURE
    config = {"model_type": "chameleon_vqgan", "embed_dim": a["embed_dim"], "num_embeddings": a["n_embed"],
              "latent_channels": a["z_channels"], "resolution": a["resolution"], "base_channels": a["ch"],
              "channel_multiplier": a["ch_mult"], "num_res_blocks": a["num_res_blocks"],
              "attn_resolutions": a["attn_resolutions"], "double_latent": False}
    state = torch.load(FOLDER / "vqgan.ckpt", weights_only=True)["state_dict"]
    encoder = {k: v.float() for k, v in state.items() if not k.startswith(("decoder.", "loss."))}
    ref = ChameleonVQVAE(transformers.ChameleonVQVAEConfig(**config)).eval()
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {k: tuple(v.shape) for k, v in encoder.items()}
    ref.load_state_dict(encoder, strict=True)
    with torch.no_grad():
        assert torch.equal(ref.encode(expected["input"]).image_tokens.reshape(2, -1), expected["ids"])
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({"rescale_factor": 1 / 127.5}))  # x as it is
    save_file(encoder, str(folder / "model.safetensors"))
    hf = convert("transformers", folder)
    assert hf.config["encoder"]["input_scale"] == [1.0] * 3 and hf.config["encoder"]["input_shift"] == [0.0] * 3
    assert torch.equal(hf.encode(expected["input"]), expected["ids"])
    assert torch.equal(hf.encode(expected["input"]), tok.encode(expected["input"]))


@pytest.mark.parametrize("key, value, message", [
    ("n_embed", 8192, r"the config's n_embed is 8192, the weights have 64 \(quantize\.embedding\.weight \(64, 6\)\)"),
    ("ch_mult", [1, 1, 2], r"ch_mult is \[1, 1, 2\], the weights have \[1, 1, 1\] \(encoder\.down\.0\.block\.0\.conv2"
                           r"\.weight \(32, 32, 3, 3\)"),
    ("attn_resolutions", [], r"attn_resolutions \[\] at resolution 32 \(levels\) is \[\], the weights have \[0\] "
                             r"\(decoder\.up\.0\.attn\.0\.norm\.weight \(32,\)"),
    ("z_channels", 256, r"z_channels is 256, the weights have 8 \(encoder\.conv_out\.weight \(8, 32, 3, 3\)\)"),
    ("double_z", True, r"not converted \(Chameleon's: no remap, double_z false"),
])
def test_a_config_the_weights_disagree_with_is_refused(tmp_path, key, value, message):
    with pytest.raises(ConvertError, match=message):
        convert("chameleon", copy_release(tmp_path, **{key: value}))


def test_other_files_are_refused_with_the_reason(tmp_path):
    folder = copy_release(tmp_path)
    (folder / "vqgan.yaml").unlink()
    with pytest.raises(ConvertError, match=r"vqgan\.ckpt: no vqgan\.yaml beside it; expected Chameleon's tokenizer"):
        convert("chameleon", folder)
    (folder / "vqgan.yaml").write_text("trainer: {max_steps: 10}\n")
    with pytest.raises(ConvertError, match="not a Chameleon VQGAN config: no model.params.ddconfig"):
        convert("chameleon", folder)
    shutil.copy(FOLDER / "vqgan.yaml", folder / "vqgan.yaml")
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(1)}}, folder / "vqgan.ckpt")  # LlamaGen's layout
    with pytest.raises(ConvertError, match="not a Chameleon VQGAN checkpoint: expected a 'state_dict'"):
        convert("chameleon", folder)
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}}, folder / "vqgan.ckpt")
    with pytest.raises(ConvertError, match="not a taming VQGAN state dict: no tensor quantize.embedding.weight"):
        convert("chameleon", folder)
    with pytest.raises(ConvertError, match="no such file or folder"):
        convert("chameleon", tmp_path / "absent")
