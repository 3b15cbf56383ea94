"""``encodec``: Meta's EnCodec 24 kHz checkpoints (the ``encodec`` package, 0.1.1).

SOURCE is the ``.th`` state dict the publisher distributes (``encodec_24khz-d7cc33bc.th``). It
carries no config, so the architecture is read from the tensors: the SEANet widths, kernel sizes
and ratios (a downsampling convolution's kernel is twice its ratio), the LSTM's layers, the
number and size of the codebooks. It is the causal 24 kHz family (weight norm, reflect padding,
1x1 convolution skips, a 2-layer LSTM with a skip, an RVQ of Euclidean EMA codebooks; 75 frames
per second; 1.5 / 3 / 6 / 12 / 24 kbps = depth 2 / 4 / 8 / 16 / 32). The 48 kHz stereo model (time
group norm, 1-second segments with overlap-add and loudness scales) is refused with that reason.

Differences from the reference, by design: padded batches give each item what it gets alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, load_pickle, rename
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

SAMPLE_RATE = 24_000
WEIGHT = "conv.conv.weight_v"
UNIT = {"block.1": "conv1", "block.3": "conv2", "shortcut": "shortcut"}


def shape(state: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConvertError(f"not an EnCodec state dict: no tensor {key!r}")
    return tuple(state[key].shape)


def stages(state: dict[str, Tensor], side: str, first: int) -> int:
    """How many SEANet stages (3 modules each from module ``first``) come before the LSTM."""
    n = 0
    while f"{side}.model.{first + 3 * n}.lstm.weight_ih_l0" not in state:
        n += 1
        if n > 16:
            raise ConvertError(f"not an EnCodec state dict: no LSTM found in the {side}")
    return n


def encodec_config(
    state: dict[str, Tensor], sample_rate: int = SAMPLE_RATE, causal: bool = True, pad_mode: str = "reflect",
    shortcut: bool = True,
) -> tuple[dict, int]:
    """Our tokenizer config read from EnCodec's tensors (and what they do not say: the rate, causality, padding
    and skips of the 24 kHz family unless given), and its number of stages."""
    if any(".norm." in k for k in state):
        raise ConvertError("this is an EnCodec 48 kHz model (time group norm, segments with overlap-add); "
                           "FORMAT encodec converts the 24 kHz family (weight norm)")
    filters, channels, kernel = shape(state, f"encoder.model.0.{WEIGHT}")
    n = stages(state, "encoder", 1)
    ratios = [shape(state, f"encoder.model.{3 + 3 * i}.{WEIGHT}")[2] // 2 for i in range(n)][::-1]
    hidden, _, residual_kernel = shape(state, f"encoder.model.1.block.1.{WEIGHT}")
    dimension, _, last_kernel = shape(state, f"encoder.model.{3 + 3 * n}.{WEIGHT}")
    lstm = sum(1 for k in state if re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l\d+", k))
    layers = sorted({int(m[1]) for k in state if (m := re.fullmatch(r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed", k))})
    if not layers:
        raise ConvertError("not an EnCodec state dict: no quantizer.vq.layers.*._codebook.embed")
    bins, code_dim = shape(state, "quantizer.vq.layers.0._codebook.embed")
    common = {"latent_dim": dimension, "channels": filters, "ratios": ratios, "dilations": [1], "kernel_size": kernel,
              "last_kernel_size": last_kernel, "residual_kernel_size": residual_kernel, "compress": filters // hidden,
              "activation": "elu", "sequence": "lstm", "sequence_layers": lstm, "causal": causal,
              "pad_mode": "zeros" if pad_mode == "constant" else pad_mode, "residual_shortcut": shortcut}
    encoder = {"name": "audio", "in_channels": channels, **common}
    decoder = {"name": "audio", "out_channels": channels, **common}
    quantizer = {"name": "rvq", "dim": code_dim, "depth": len(layers), "codebook_size": bins, "ema": True, "decay": 0.99,
                 "kmeans_init": False, "dead_code_threshold": 2.0, "quantizer_dropout": 0.5, "commitment_weight": 1.0}
    config = tokenizer_config(encoder, quantizer, decoder, modality="audio", sample_rate=sample_rate, channels=channels,
                              metadata={"converted_from": "encodec"})
    return config, n


def encodec_rules(n: int) -> list:
    """(pattern, our name of a match) for every tensor of an EnCodec of ``n`` stages (weight norm already renamed)."""
    conv = r"conv\.conv\.(.+)"

    def stage(first: int):
        return lambda x: (int(x[1]) - first) // 3

    return [
        (rf"encoder\.model\.0\.{conv}", lambda x: f"encoder.stem.conv.{x[1]}"),
        (rf"encoder\.model\.(\d+)\.(block\.1|block\.3|shortcut)\.{conv}",
         lambda x: f"encoder.stages.{stage(1)(x)}.units.0.{UNIT[x[2]]}.conv.{x[3]}"),
        (rf"encoder\.model\.{1 + 3 * n}\.lstm\.(.+)", lambda x: f"encoder.sequence.net.{x[1]}"),
        (rf"encoder\.model\.{3 + 3 * n}\.{conv}", lambda x: f"encoder.head.conv.{x[1]}"),
        (rf"encoder\.model\.(\d+)\.{conv}", lambda x: f"encoder.stages.{stage(3)(x)}.down.conv.{x[2]}"),
        (rf"decoder\.model\.0\.{conv}", lambda x: f"decoder.stem.conv.{x[1]}"),
        (r"decoder\.model\.1\.lstm\.(.+)", lambda x: f"decoder.sequence.net.{x[1]}"),
        (r"decoder\.model\.(\d+)\.convtr\.convtr\.(.+)", lambda x: f"decoder.stages.{stage(3)(x)}.up.conv.{x[2]}"),
        (rf"decoder\.model\.(\d+)\.(block\.1|block\.3|shortcut)\.{conv}",
         lambda x: f"decoder.stages.{stage(4)(x)}.units.0.{UNIT[x[2]]}.conv.{x[3]}"),
        (rf"decoder\.model\.{3 + 3 * n}\.{conv}", lambda x: f"decoder.head.conv.{x[1]}"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed", lambda x: f"quantizer.levels.{x[1]}.codebook"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed_avg", lambda x: f"quantizer.levels.{x[1]}.embed_sum"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.cluster_size", lambda x: f"quantizer.levels.{x[1]}.cluster_size"),
    ]


@CONVERTERS.register("encodec")
class EncodecConverter(Converter):
    """EnCodec 24 kHz ``.th`` state dicts."""

    source_patterns = ("*.th",)
    describe = "an EnCodec .th state dict (the encodec package's EncodecModel, 24 kHz family)"

    def read(self, source: Path) -> Tokenizer:
        state = load_pickle(source, self.describe)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
            raise ConvertError(f"{source}: not an EnCodec state dict (a flat name -> tensor mapping); found {found}")
        return read_encodec(state, source)


def read_encodec(state: dict[str, Tensor], source: Path, **architecture: object) -> Tokenizer:
    """The tokenizer of an EnCodec's tensors (the ``encodec`` package's names); ``architecture``: what the tensors
    do not say (``encodec_config``'s keyword arguments)."""
    try:
        config, n = encodec_config(state, **architecture)
    except ConvertError as err:
        raise ConvertError(f"{source}: {err}") from None
    tensors = rename({k: v for k, v in state.items() if not k.endswith("._codebook.inited")}, encodec_rules(n))
    own = [r"quantizer\.steps", r"quantizer\.levels\.\d+\.initted"]
    return assemble(config, tensors, own)
