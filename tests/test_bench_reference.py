"""``discotok bench reference``: ours and the reference on the same weights in one process (times nothing).

EnCodec: the encodec package's full-size 24 kHz model on a short clip, converted in memory, gives its ids and audio.
TiTok: bytedance/1d-tokenizer's code is not in CI, so a stand-in checkout is written here whose ``modeling.titok.TiTok``
replays what the real one did on the fixture (``tests/fixtures/titok_small.safetensors``: its tensors, ids and
reconstruction); the bench's import, conversion and mapping between the two sides must give those ids and images.
Without ``--reference-path``, or with a folder that is not a checkout, the command says what it needs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from discotok.bench import main as bench_main
from discotok.bench.reference import format_table
from discotok.modalities.image import ImageModality
from tests.fixtures.make_titok import FIXTURE, fixture_input

FAKE_TITOK = '''
"""A stand-in for bytedance/1d-tokenizer's modeling/titok.py: what its TiTok did on the fixture, replayed."""
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.fixtures.make_titok import reference_state

FIXTURE = {fixture!r}


class TiTok(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        with safe_open(FIXTURE, framework="pt") as f:
            self.state = reference_state(json.loads(f.metadata()["two_stage.shapes"]))
        self.outputs = load_file(FIXTURE)
        self.weight = torch.nn.Parameter(torch.zeros(3))

    def state_dict(self):
        return self.state

    def encode(self, x):
        assert torch.allclose(x * 2 - 1, self.outputs["input"], atol=1e-6), "not the fixture's images"
        return None, {{"min_encoding_indices": self.outputs["two_stage.ids"][:, None]}}

    def decode_tokens(self, tokens):
        assert torch.equal(tokens, self.outputs["two_stage.ids"]), "not the fixture's ids"
        return self.outputs["two_stage.reconstruction"]
'''


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """A folder laid out as a 1d-tokenizer checkout, with the stand-in TiTok and the fixture's config as S-128's; the
    bench's images are the fixture's; the stand-in ``modeling`` package (and ``accelerate``'s stub) are forgotten
    afterwards."""
    from safetensors import safe_open

    with safe_open(str(FIXTURE), framework="pt") as f:
        config = f.metadata()["two_stage.config"]
    (tmp_path / "modeling").mkdir()
    (tmp_path / "modeling" / "__init__.py").write_text("")
    (tmp_path / "modeling" / "titok.py").write_text(FAKE_TITOK.format(fixture=str(FIXTURE)))
    (tmp_path / "configs" / "infer" / "TiTok").mkdir(parents=True)
    (tmp_path / "configs" / "infer" / "TiTok" / "titok_s128.yaml").write_text(config)
    monkeypatch.setattr(ImageModality, "bench_input", lambda self, batch, seconds: (fixture_input(), {
        "image_size": list(self.image_size)}))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("modeling", "accelerate"):
            del sys.modules[name]


def test_titok_against_a_stand_in_checkout(fake_checkout, tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = bench_main(["reference", "titok", "--reference-path", str(fake_checkout), "--configs", "S-128",
                     "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    row = json.loads(out.read_text())["rows"][0]
    assert row["config"] == "TiTok-S-128" and row["image_size"] == [32, 32] and row["batch_size"] == 4
    assert row["ids_equal_fp32"] == 1.0 and row["ids_equal_own_fp32_ours_fp32"] == 1.0
    assert row["distinct_ids"] >= 16  # random, non-zero codebooks: the agreement is not trivial
    assert row["decode_max_abs_diff"] < 1e-4  # the reference's [0, 1] output, clamped, in our [-1, 1]
    assert row["ids_equal_bf16"] > 0.5 and row["precisions"] == ["fp32", "bf16"]
    printed = capsys.readouterr().out
    assert "| TiTok-S-128 | fp32 | " in printed and "| TiTok-S-128 | bf16 | " in printed

    from discotok.bench.reference_titok import import_titok

    with pytest.raises(ValueError, match="a package named modeling was imported from .* instead"):
        import_titok(tmp_path / "elsewhere")


def test_titok_without_a_checkout_says_what_it_needs(tmp_path, capsys):
    assert bench_main(["reference", "titok", "--configs", "S-128"]) == 1
    err = capsys.readouterr().err
    assert "discotok bench reference titok: error: --reference-path DIR is needed" in err
    assert "git clone https://github.com/bytedance/1d-tokenizer" in err
    assert bench_main(["reference", "titok", "--reference-path", str(tmp_path)]) == 1
    assert f"--reference-path {tmp_path}: no modeling/titok.py; expected a checkout" in capsys.readouterr().err


def test_encodec_against_the_encodec_package(tmp_path, capsys):
    pytest.importorskip("encodec")
    out = tmp_path / "rows.json"
    rc = bench_main(["reference", "encodec", "--seconds", "0.2", "--batch-size", "2", "--repeats", "1",
                     "--bandwidth", "3", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    row = json.loads(out.read_text())["rows"][0]
    assert row["config"] == "EnCodec 24 kHz, 3 kbps"
    assert row["params_m_ours"] == pytest.approx(row["params_m_reference"])
    assert row["ids_equal_fp32"] == 1.0 and row["distinct_ids"] > 40  # of 120 ids (4 codebooks of 1024): spread
    assert row["decode_max_abs_diff"] < 1e-4
    for step in ("encode", "decode"):
        for side in ("ours", "reference"):
            assert row[f"{step}_ms_{side}_bf16"] > 0 and row[f"{step}_cpu_ms_{side}_fp32"] >= 0
        assert row[f"{step}_x_bf16_vs_reference_fp32"] > 0
    assert torch.get_num_threads() == 1
    assert bench_main(["reference", "encodec", "--bandwidth", "7"]) == 1
    assert "--bandwidth 7 is not one of EnCodec 24 kHz's: 1.5, 3, 6, 12, 24" in capsys.readouterr().err
    assert "EnCodec 24 kHz, 3 kbps" in format_table([row])
