"""``discotok convert wavtokenizer``: a WavTokenizer checkpoint gives the ids and audio that WavTokenizer's own code
gave for the same weights and clips (``tests/fixtures/wavtokenizer_small.safetensors``, made by
``tests/fixtures/make_wavtokenizer.py`` from WavTokenizer at the commit it names); the training module's other
parts are ignored by name and listed; a damaged checkpoint, or a config the weights disagree with, is refused.
``experiment=wavtokenizer`` / ``wavtokenizer_40`` build the published models' tensors (the reference's names and
shapes at its smallest configs, ``tests/fixtures/wavtokenizer_published_shapes.json``, converted on the meta
device) and options, and fine-tune a converted checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from discotok import Tokenizer
from discotok.cli import main
from discotok.convert import ConvertError, convert
from tests.finetuning import moved_from, two_steps
from tests.fixtures.make_wavtokenizer import (ARCHITECTURE, COMMIT, FIXTURE, SHAPES, fixture_input,
                                              reference_state)

OTHERS = {"multiperioddisc.discriminators.0.convs.0.weight": torch.randn(4, 1, 5, 1),
          "dac.discriminators.0.convs.0.bias": torch.randn(4)}


def publisher_config(**changes: dict) -> dict:
    """The publisher's config layout (``configs/wavtokenizer_*_attn.yaml``) at the fixture's size."""
    a = ARCHITECTURE
    parts = {
        "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [6.6] * 4, "train_codebooks": True,
                              "num_quantizers": 1, "dowmsamples": a["ratios"], "vq_bins": a["vq_bins"],
                              "vq_kmeans": 200},
        "backbone": {"input_channels": a["dimension"], "dim": a["dim"], "intermediate_dim": a["intermediate_dim"],
                     "num_layers": a["num_layers"], "adanorm_num_embeddings": a["adanorm_num_embeddings"]},
        "head": {"dim": a["dim"], "n_fft": a["n_fft"], "hop_length": a["hop_length"], "padding": "same"},
    }
    for part, values in changes.items():
        parts[part].update(values)
    return {"model": {"class_path": "decoder.experiment.WavTokenizer",
                      "init_args": {"sample_rate": 24000, **{k: {"class_path": f"decoder.{k}", "init_args": v}
                                                             for k, v in parts.items()}}}}


def checkpoint(tmp_path, config: dict | None = None) -> tuple[dict, dict]:
    expected = load_file(str(FIXTURE))
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    assert meta["commit"] == COMMIT
    state = reference_state(json.loads(meta["shapes"]), expected["codebook"])
    torch.save({"state_dict": {**state, **OTHERS}, "epoch": 3, "global_step": 1200},
               tmp_path / "wavtokenizer_small.ckpt")
    if config is not None:
        (tmp_path / "wavtokenizer_small.yaml").write_text(yaml.safe_dump(config))
    return expected, state


def test_converted_wavtokenizer_gives_the_reference_ids_and_audio(tmp_path, capsys):
    expected, _ = checkpoint(tmp_path, publisher_config())
    rc = main(["convert", "wavtokenizer", str(tmp_path / "wavtokenizer_small.ckpt"), "-o", str(tmp_path / "tok")])
    assert rc == 0, capsys.readouterr().err
    tok = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (tok.modality.sample_rate, tok.modality.hop_length) == (24_000, 8)
    meta = json.loads((tmp_path / "tok" / "config.json").read_text())["metadata"]
    assert meta["ignored"] == {"dac": 1, "feature_extractor.encodec.decoder": 38, "multiperioddisc": 1}, meta
    assert meta["config"] == "wavtokenizer_small.yaml" and meta["bandwidth_id"] == 0
    distinct = set()
    for i, x in enumerate(fixture_input()):  # a batch of 400 samples; a clip of 397 (not whole hops)
        assert torch.equal(x, expected[f"input.{i}"])
        ids = tok.encode(x)
        assert torch.equal(ids, expected[f"ids.{i}"]), i
        distinct |= set(ids.flatten().tolist())
        audio = tok.decode(ids)
        assert audio.shape == expected[f"audio.{i}"].shape
        assert (audio - expected[f"audio.{i}"]).abs().max() < 1e-4, i
    assert len(distinct) >= 30  # of 64 codes: the ids are not all alike
    assert expected["audio.0"].abs().max() < 1  # no reference sample was clamped by our decode


def test_a_folder_without_config_converts_alike(tmp_path):
    expected, _ = checkpoint(tmp_path)
    tok = convert("wavtokenizer", tmp_path)
    assert torch.equal(tok.encode(expected["input.0"]), expected["ids.0"])


def test_a_damaged_wavtokenizer_checkpoint_is_refused(tmp_path):
    _, state = checkpoint(tmp_path)
    del state["backbone.convnext.1.pwconv2.bias"]
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(ConvertError, match=r"missing: decoder\.blocks\.1\.mlp\.2\.bias"):
        convert("wavtokenizer", tmp_path / "bad.ckpt")
    torch.save({"model": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ConvertError, match="not a WavTokenizer checkpoint: expected a 'state_dict'"):
        convert("wavtokenizer", tmp_path / "other.ckpt")


@pytest.mark.parametrize("changes, message", [
    ({"feature_extractor": {"vq_bins": 4096}},
     r"vq_bins is 4096, the weights have 64 \(feature_extractor\.encodec\.quantizer\.vq\.layers\.0\._codebook\.embed "
     r"\(64, 16\)\)"),
    ({"feature_extractor": {"dowmsamples": [6, 5, 5, 4]}, "head": {"hop_length": 600}},
     r"dowmsamples is \[6, 5, 5, 4\], the weights have \[4, 2\] \(.*encoder\.model\.3\.conv\.conv\.weight_v \(8, 4, 4\)"),
    ({"backbone": {"dim": 768}}, r"backbone dim is 768, the weights have 32 \(backbone\.embed\.weight \(32, 16, 7\)\)"),
])
def test_a_config_the_weights_disagree_with_is_refused(tmp_path, changes, message):
    checkpoint(tmp_path, publisher_config(**changes))
    with pytest.raises(ConvertError, match="the config and the weights disagree: the config's .*" + message):
        convert("wavtokenizer", tmp_path / "wavtokenizer_small.ckpt")


def test_a_short_clip_in_a_padded_batch_gets_what_it_gets_alone(tmp_path):
    """The attention block's GroupNorms and keys see only an item's own frames; the inverse STFT's last window
    (n_fft samples) is where a padded item may differ, as the ``vocos`` decoder documents."""
    expected, _ = checkpoint(tmp_path)
    tok = convert("wavtokenizer", tmp_path / "wavtokenizer_small.ckpt")
    long, short = expected["input.0"][:1], expected["input.1"][..., :203]
    batch, lengths = torch.zeros(2, 1, 400), torch.tensor([400, 203])
    batch[0], batch[1, :, :203] = long[0], short[0]
    ids = tok.encode(batch, lengths)
    alone = tok.encode(short)
    assert torch.equal(ids[0], expected["ids.0"][0]) and torch.equal(ids[1, : alone.shape[1]], alone[0])
    audio = tok.decode(ids, lengths=lengths)
    assert (audio[0] - expected["audio.0"][0]).abs().max() < 1e-4
    n_fft = tok.decoder.n_fft
    assert (audio[1, :, : 203 - n_fft] - tok.decode(alone)[0, :, : 203 - n_fft]).abs().max() < 1e-4


def recipe(experiment: str) -> dict:
    """The tokenizer config ``discotok train experiment=...`` builds from scratch."""
    from hydra import compose, initialize_config_dir

    from discotok.train.run import config_dir, tokenizer_spec

    with initialize_config_dir(config_dir(), version_base=None):
        return tokenizer_spec(compose("train", overrides=[f"experiment={experiment}"]))


@pytest.mark.parametrize(("experiment", "rate", "bits"), [("wavtokenizer", "75", 900), ("wavtokenizer_40", "40", 480)])
def test_the_recipes_build_the_published_wavtokenizer(experiment, rate, bits):
    """The recipe's tokenizer has the tensors (names and shapes) of the publisher's model converted, and the options
    the converter reads (padding, skips, attention, "same" ISTFT, ...); built on the meta device."""
    from discotok.convert.wavtokenizer import fold_adanorm, renamed, split, wavtokenizer_config

    published = json.loads(SHAPES.read_text())
    assert published["commit"] == COMMIT
    state = {k: torch.empty(v, device="meta") for k, v in published[rate].items()}
    folded = fold_adanorm(split(state)[0], 0)
    converted = wavtokenizer_config(folded)
    folded.pop("head.istft.window")
    theirs = {k: tuple(v.shape) for k, v in renamed(folded, len(converted["encoder"]["ratios"])).items()}
    ours = recipe(experiment)
    for role in ("encoder", "decoder", "quantizer"):
        wanted = {k: v for k, v in converted[role].items() if k != "kmeans_init"}  # the recipe trains from scratch
        assert {k: ours[role].get(k) for k in wanted} == wanted, role
    with torch.device("meta"):
        tok = Tokenizer.from_config(ours)
    shapes = {k: tuple(v.shape) for k, v in tok.state_dict().items() if k != "quantizer.initted"}
    assert shapes == theirs
    assert (tok.modality.sample_rate, tok.modality.bits_per_second()) == (24_000, bits)
    assert sum(v.numel() for v in tok.parameters()) > 70e6  # the published size, never allocated


def test_two_steps_from_a_converted_wavtokenizer(tmp_path, speech_folder):
    """``discotok train experiment=wavtokenizer init_from=<converted fixture>``: the run loads it strictly, trains
    two GAN steps with the recipe's losses and moves the weights a little (encoder, decoder and its attention)."""
    checkpoint(tmp_path)
    start = convert("wavtokenizer", tmp_path / "wavtokenizer_small.ckpt", tmp_path / "tok")
    _, tuned = two_steps(tmp_path / "tok", tmp_path / "run", "experiment=wavtokenizer", f"data.source={speech_folder}",
                         "data.segment_seconds=0.1", "data.val_seconds=0.2", "data.num_workers=0",
                         "loss.adversarial.start_step=0")
    moved = moved_from(start, tuned)
    assert {k.split(".")[0] for k in moved} == {"encoder", "decoder"}  # the codebook is EMA buffers:
    assert not torch.equal(start.state_dict()["quantizer.codebook"], tuned.state_dict()["quantizer.codebook"])
    assert any(k.startswith("decoder.pos_net.") for k in moved)
