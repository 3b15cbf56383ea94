"""Random-weight conversions of published tokenizers at their real sizes, for ``discotok eval`` side by side.

Run from the repository root with it on the path (it reuses the converter tests' randomisers in ``tests/``):

    PYTHONPATH=. python scripts/random_published.py audio OUT [--speech-seconds 4]
    PYTHONPATH=. python scripts/random_published.py images OUT --llamagen PATH/TO/LlamaGen

``audio`` writes OUT/encodec_24khz (encodec 0.1.1 ``encodec_model_24khz``), OUT/dac_24khz (descript-audio-codec's
24 kHz configuration), OUT/snac_24khz (snac 1.2.1, hubertsiuzdak/snac_24khz's configuration) and OUT/mimi
(transformers' ``MimiModel(MimiConfig())``), each saved as its publisher saves it and converted with ``discotok
convert``. A fresh EnCodec or Mimi has all-zero codebooks (every id 0): each level is filled with random codes at
the mean and spread of the residual of the latents of the embedded speech (``discotok.data.speech``, never the
held-out set), as the converter tests do; SNAC's code projections are whitened on the same speech; DAC's random
Snake slopes and biases are spread.

``images`` writes OUT/titok_s128 (TiTok-S-128's config and tensor shapes, kept in
``tests/fixtures/titok_small.safetensors``), OUT/llamagen_vq16 (LlamaGen's ``VQ_16`` built from its code at
``tests/fixtures/make_llamagen.COMMIT``) and OUT/chameleon (transformers' ``ChameleonVQVAE`` at its default,
published configuration: encoder and quantizer only).

The weights are random: the tokenizers' figures show rates and speed, never the published models' quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from einops import rearrange

from discotok.convert import convert


@torch.no_grad()
def fill_codebooks(codebooks: list[torch.Tensor], residual: torch.Tensor, project=None) -> None:
    """Each codebook (K, D) of a residual quantizer filled with random codes at the mean and spread of the residual
    (N, D) reaching it, level by level (``project``: the level's input projection, if any)."""
    for book in codebooks:
        r = residual if project is None else project(residual)
        book.copy_(r.mean(0) + r.std(0) * torch.randn_like(book))
        nearest = torch.cdist(r, book).argmin(dim=1)
        residual = residual - book[nearest]


def speech(sample_rate: int, seconds: float) -> torch.Tensor:
    """Embedded speech (espeak-ng, else synthetic clips) as one (1, 1, T) batch."""
    from discotok.data.speech import speech_clip

    return speech_clip(sample_rate, 1, seconds, count=1)


def encodec_24khz(out: Path, seconds: float) -> Path:
    import encodec

    from tests.conftest import randomised

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = randomised(encodec.EncodecModel.encodec_model_24khz(pretrained=False))
    with torch.no_grad():
        latents = rearrange(model.encoder(speech(24_000, seconds)), "b d t -> (b t) d")
    layers = model.quantizer.vq.layers
    fill_codebooks([layer._codebook.embed for layer in layers], latents)
    with torch.no_grad():
        for layer in layers:
            layer._codebook.inited.fill_(1)
            layer._codebook.embed_avg.copy_(layer._codebook.embed)
    torch.save(model.state_dict(), out / "encodec_24khz.th")
    convert("encodec", out / "encodec_24khz.th", out / "encodec_24khz")
    return out / "encodec_24khz"


def dac_24khz(out: Path, seconds: float) -> Path:
    import dac

    from tests.conftest import randomised

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = randomised(dac.DAC(sample_rate=24_000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2],
                                   n_codebooks=32))
    whiten_dac(model, speech(24_000, seconds))
    model.save(str(out / "dac_24khz.pth"), package=False)
    convert("dac", out / "dac_24khz.pth", out / "dac_24khz")
    return out / "dac_24khz"


@torch.no_grad()
def whiten_dac(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Each level's input projection whitened on the residual of the latents of ``x`` (mean 0, identity covariance)
    as in the SNAC converter test: a random encoder's latents vary little around a large mean, and all fall on
    one or two codes of DAC's l2-normalised codebooks. The projections are weight-normed (``weight_g``,
    ``weight_v``): the new weight goes into ``weight_v`` and its norms into ``weight_g``."""
    residual = model.encoder(model.preprocess(x, 24_000))
    for level in model.quantizer.quantizers:
        projected = rearrange(level.in_proj(residual), "b d t -> (b t) d")
        values, vectors = torch.linalg.eigh(torch.cov(projected.T))
        white = vectors @ torch.diag(values.clamp(min=1e-3 * float(values.max())).rsqrt()) @ vectors.T
        weight = (white @ level.in_proj.weight.squeeze(-1))[..., None]
        level.in_proj.weight_v.copy_(weight)
        level.in_proj.weight_g.copy_(weight.norm(dim=(1, 2), keepdim=True))
        level.in_proj.bias.copy_(white @ (level.in_proj.bias - projected.mean(0)))
        residual = residual - level(residual)[0]


def snac_24khz(out: Path, seconds: float) -> Path:
    import snac

    from tests.conftest import randomised
    from tests.test_convert_snac import saved, spread

    config = {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
              "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
              "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}
    torch.manual_seed(0)
    model = spread(randomised(snac.SNAC(**config)), speech(24_000, seconds))
    convert("snac", saved(model, config, out / "snac_24khz_hub"), out / "snac_24khz")
    return out / "snac_24khz"


def mimi(out: Path, seconds: float) -> Path:
    import transformers

    from tests.hf_reference import save
    from tests.test_convert_mimi import randomised_mimi

    torch.manual_seed(1)
    model = randomised_mimi(transformers.MimiModel(transformers.MimiConfig()).eval(), speech(24_000, seconds))
    convert("transformers", save(model, out / "mimi_hf"), out / "mimi")
    return out / "mimi"


def titok_s128(out: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tests.fixtures.make_titok import FIXTURE, reference_state

    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = f.metadata()
    folder = out / "titok_s128_hub"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(meta["titok_s128.config"])
    save_file(reference_state(json.loads(meta["titok_s128.shapes"])), str(folder / "model.safetensors"))
    convert("titok", folder, out / "titok_s128")
    return out / "titok_s128"


def llamagen_vq16(out: Path, repo: Path) -> Path:
    from tests.fixtures.make_llamagen import reference_state

    sys.path.insert(0, str(repo))
    from tokenizer.tokenizer_image.vq_model import VQ_16

    with torch.device("meta"):
        shapes = {k: list(v.shape) for k, v in VQ_16().state_dict().items() if k != "quantize.codebook_used"}
    state = reference_state(shapes)
    state["quantize.codebook_used"] = torch.zeros(65536)
    torch.save({"model": state}, out / "llamagen_vq16.pt")
    convert("llamagen", out / "llamagen_vq16.pt", out / "llamagen_vq16")
    return out / "llamagen_vq16"


def chameleon(out: Path) -> Path:
    import transformers

    from tests.conftest import randomised
    from tests.hf_reference import save
    from tests.test_convert_emu3 import spread_codebook, spread_norms

    torch.manual_seed(0)
    config = transformers.ChameleonVQVAEConfig()
    model = randomised(transformers.models.chameleon.modeling_chameleon.ChameleonVQVAE(config))
    spread_norms(model)
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        spread_codebook(model.quantize.embedding.weight, model.quant_conv(model.encoder(x)))
    convert("transformers", save(model, out / "chameleon_hf"), out / "chameleon")
    return out / "chameleon"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["audio", "images"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--speech-seconds", type=float, default=4.0, help="speech the codebooks are spread on")
    parser.add_argument("--llamagen", type=Path, help="a checkout of FoundationVision/LlamaGen (images)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == "audio":
        made = [build(args.out, args.speech_seconds) for build in (encodec_24khz, dac_24khz, snac_24khz, mimi)]
    else:
        if args.llamagen is None:
            parser.error("images need --llamagen PATH (a checkout of FoundationVision/LlamaGen)")
        made = [titok_s128(args.out), llamagen_vq16(args.out, args.llamagen), chameleon(args.out)]
    for path in made:
        print(path)


if __name__ == "__main__":
    main()
