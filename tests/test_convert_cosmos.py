"""``discotok convert cosmos``: Cosmos-Tokenizer's TorchScript files, read as data, give the ids and reconstruction
that NVIDIA's own code gave for the same weights and images (``tests/fixtures/cosmos_small/*.jit`` and
``tests/fixtures/cosmos_small.safetensors``, made by ``tests/fixtures/make_cosmos.py`` from Cosmos-Tokenizer at
the commit it names); nothing a file names beyond tensors is built or run."""

from __future__ import annotations

import pickle
import shutil
import zipfile

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from discotok.layout import Layout
from discotok.nn.wavelet import haar_patch, haar_unpatch
from discotok.tokenizers import tokenizer_config
from discotok.train.run import config_dir, plain
from tests.fixtures.make_cosmos import COMMIT, FIXTURE, FOLDER, fixture_input

GRID = Layout("grid", (8, 12))  # 32x48 images at compression 4 (Haar patch size 2, one downsampling)


def reference() -> dict[str, torch.Tensor]:
    with safe_open(str(FIXTURE), framework="pt") as f:
        assert f.metadata()["commit"] == COMMIT
    return load_file(str(FIXTURE))


def test_converted_cosmos_gives_the_reference_ids_and_images(tmp_path, capsys):
    expected = reference()
    assert main(["convert", "cosmos", str(FOLDER), "-o", str(tmp_path / "tok")]) == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    x = fixture_input()
    assert torch.equal(x, expected["input"])
    ids = tok.encode(x)
    assert torch.equal(ids, expected["ids"])
    assert ids.unique().numel() > 80  # of 192 tokens and 1000 codes: the comparison is not trivial
    assert (tok.decode(ids, layout=GRID) - expected["reconstruction"].clamp(-1, 1)).abs().max() < 1e-4
    with torch.no_grad():  # the decoder's own output, before clamping (random weights reach beyond [-1, 1])
        raw = tok.decoder(tok.quantizer.ids_to_codes(ids), GRID)
    assert (raw - expected["reconstruction"]).abs().max() < 1e-4
    assert tok.config["encoder"]["attn_levels"] == [0] and tok.config["decoder"]["attn_levels"] == [0]
    assert tok.quantizer.levels == [8, 5, 5, 5]
    assert tok.modality.num_tokens == 256 * 256  # 1024x1024 images (the publisher's resolution) at compression 4


def test_either_jit_file_or_the_autoencoder_is_a_source(tmp_path):
    ids = reference()["ids"]
    assert torch.equal(convert("cosmos", FOLDER / "decoder.jit").encode(fixture_input()), ids)
    folder = tmp_path / "repo"
    folder.mkdir()
    shutil.copy(FOLDER / "encoder.jit", folder / "autoencoder.jit")  # an autoencoder without a decoder
    with pytest.raises(ConvertError, match="both the encoder and the decoder are needed"):
        convert("cosmos", folder)
    shutil.copy(FOLDER / "encoder.jit", tmp_path / "encoder.jit")
    with pytest.raises(ConvertError, match="missing: decoder.jit"):
        convert("cosmos", tmp_path / "encoder.jit")


def script_archive(path, payload: bytes, code: bool = True) -> None:
    """A zip laid out as a TorchScript file whose data.pkl is ``payload``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        if code:
            archive.writestr("archive/code/__torch__.py", "")


def test_files_that_are_not_cosmos_torchscript_are_refused_without_running_anything(tmp_path):
    sentinel = tmp_path / "ran"
    (tmp_path / "noise.jit").write_bytes(b"not a zip at all")
    with pytest.raises(ConvertError, match="not a zip archive"):
        convert("cosmos", tmp_path / "noise.jit")
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "vq_ds16_c2i.pt")  # LlamaGen's
    with pytest.raises(ConvertError, match="not a TorchScript file"):
        convert("cosmos", tmp_path / "vq_ds16_c2i.pt")

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {sentinel}",))

    script_archive(tmp_path / "evil.jit", pickle.dumps(Evil(), protocol=2))
    with pytest.raises(ConvertError, match=r"names (posix|nt|os)\.system, which discotok does not build"):
        convert("cosmos", tmp_path / "evil.jit")
    payload = pickle.dumps(Evil(), protocol=2).replace(b"posix", b"__torch__.x")  # hidden behind a __torch__ class?
    script_archive(tmp_path / "hidden.jit", payload)
    with pytest.raises(ConvertError):
        convert("cosmos", tmp_path / "hidden.jit")

    class Eval:
        def __reduce__(self):
            return (eval, (f"open({str(sentinel)!r}, 'w')",))

    script_archive(tmp_path / "eval.jit", pickle.dumps(Eval(), protocol=4))  # STACK_GLOBAL
    with pytest.raises(ConvertError, match="builtins.eval"):
        convert("cosmos", tmp_path / "eval.jit")
    assert not sentinel.exists()


def test_the_haar_patching_inverts_and_cosmos_trains_from_its_configs():
    x = torch.randn(2, 3, 16, 24)
    assert haar_patch(x, 4).shape == (2, 48, 4, 6)
    assert torch.allclose(haar_unpatch(haar_patch(x, 4), 4), x, atol=1e-5)
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = plain(compose("train", overrides=["encoder=cosmos", "decoder=cosmos", "quantizer=fsq"]))
    tok = Tokenizer.from_config(tokenizer_config(cfg["encoder"], cfg["quantizer"], cfg["decoder"], [32, 32]))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    ids = tok.encode(images)
    assert ids.shape == (2, 16)  # compression 8: Haar patch size 2, two downsamplings
    assert tok.decode(ids).shape == images.shape
