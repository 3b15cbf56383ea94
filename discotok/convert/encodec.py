"""``encodec``: Meta's EnCodec checkpoints (the ``encodec`` package, 0.1.1), 24 kHz and 48 kHz.

SOURCE is the ``.th`` state dict the publisher distributes (``encodec_24khz-d7cc33bc.th``,
``encodec_48khz-7e698e3e.th``). It carries no config, so the architecture is read from the tensors:
the SEANet widths, kernel sizes, channels and ratios (a downsampling convolution's kernel is twice its
ratio), the LSTM's layers, the number and size of the codebooks, and the family from the normalisation:

* 24 kHz (weight norm, ``weight_g`` / ``weight_v``): causal, reflect padding, 1x1 convolution skips, a
  2-layer LSTM with a skip, an RVQ of Euclidean EMA codebooks; 75 frames per second; 1.5 / 3 / 6 / 12 / 24
  kbps = depth 2 / 4 / 8 / 16 / 32.
* 48 kHz stereo (``conv.norm.*``: every convolution followed by ``GroupNorm(1, C)``, EnCodec's
  ``time_group_norm``; plain weights, held in our weight norm): the same SEANet, not causal, 2 channels;
  150 frames per second; 3 / 6 / 12 / 24 kbps = depth 2 / 4 / 8 / 16.

  The publisher's coding (1-second segments at a stride of 0.99 s, each divided by its RMS ``scale``, a float
  per segment the decoder multiplies back, then overlap-added) is the config's ``segments`` (``{"seconds": 1.0,
  "overlap": 0.01, "normalize": true}``): ``discotok encode`` / ``decode`` code files so, the scales stored
  beside the ids (``discotok.modalities.audio_segments``). ``Tokenizer.encode`` / ``decode`` are the network
  on the waveform they are given, the reference with ``model.segment = None`` and ``model.normalize = False``
  (its last group norm sets the decoded level, about unit RMS, not the input's). The config's ``metadata``
  says so.

Differences from the reference, by design: padded batches give each item what it gets alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, Converter, assemble, load_pickle, rename, split_weight_norm
from discotok.registry import CONVERTERS
from discotok.tokenizers.config import tokenizer_config
from discotok.tokenizers.tokenizer import Tokenizer

SAMPLE_RATE = 24_000
SAMPLE_RATE_48K = 48_000
WEIGHT = "conv.conv.weight_v"
UNIT = {"block.1": "conv1", "block.3": "conv2", "shortcut": "shortcut"}
PART = {"convtr": "conv", "norm": "norm"}
SEGMENTS_48K = {"seconds": 1.0, "overlap": 0.01, "normalize": True}  # the encodec package's 48 kHz model's
SEGMENTED = ("discotok encode / decode code files in the segments of 'segments', each with a loudness scale stored "
             "beside the ids, as the publisher's encode / decode; Tokenizer.encode / decode: the network on the "
             "waveform given as one segment, without loudness normalisation (segment=None, normalize=False; decoded "
             "at the level learnt for normalised segments); Python: discotok.modalities.audio_segments")


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


def grouped(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` is the 48 kHz family's (time group norm: ``conv.norm.*``, plain weights)."""
    return any(".norm." in k for k in state)


def encodec_config(
    state: dict[str, Tensor], sample_rate: int | None = None, causal: bool | None = None, pad_mode: str = "reflect",
    shortcut: bool = True, segments: dict | None = None,
) -> tuple[dict, int]:
    """Our tokenizer config read from EnCodec's tensors (weight norm as ``weight_g`` / ``weight_v``; and what they
    do not say: the rate, causality and segments of the family unless given, its padding and skips), and its
    number of stages. ``segments``: ``{"seconds", "overlap", "normalize"}`` (``{}``: whole clips; None: the
    family's, segments for 48 kHz)."""
    norm = grouped(state)
    rate = sample_rate or (SAMPLE_RATE_48K if norm else SAMPLE_RATE)
    segments = (SEGMENTS_48K if norm else {}) if segments is None else segments
    causal = not norm if causal is None else causal
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
              "pad_mode": "zeros" if pad_mode == "constant" else pad_mode, "residual_shortcut": shortcut,
              **({"conv_norm": "time_group"} if norm else {})}
    encoder = {"name": "audio", "in_channels": channels, **common}
    decoder = {"name": "audio", "out_channels": channels, **common}
    quantizer = {"name": "rvq", "dim": code_dim, "depth": len(layers), "codebook_size": bins, "ema": True, "decay": 0.99,
                 "kmeans_init": False, "dead_code_threshold": 2.0, "quantizer_dropout": 0.5, "commitment_weight": 1.0}
    metadata = {"converted_from": "encodec", **({"segments": SEGMENTED} if segments else {})}
    config = tokenizer_config(encoder, quantizer, decoder, modality="audio", sample_rate=rate, channels=channels,
                              metadata=metadata, **({"segments": dict(segments)} if segments else {}))
    return config, n


def encodec_rules(n: int) -> list:
    """(pattern, our name of a match) for every tensor of an EnCodec of ``n`` stages (weight norm already renamed;
    ``conv.norm.*`` / ``convtr.norm.*``: the 48 kHz family's group norms)."""
    conv = r"conv\.(conv|norm)\.(.+)"

    def stage(first: int):
        return lambda x: (int(x[1]) - first) // 3

    return [
        (rf"encoder\.model\.0\.{conv}", lambda x: f"encoder.stem.{x[1]}.{x[2]}"),
        (rf"encoder\.model\.(\d+)\.(block\.1|block\.3|shortcut)\.{conv}",
         lambda x: f"encoder.stages.{stage(1)(x)}.units.0.{UNIT[x[2]]}.{x[3]}.{x[4]}"),
        (rf"encoder\.model\.{1 + 3 * n}\.lstm\.(.+)", lambda x: f"encoder.sequence.net.{x[1]}"),
        (rf"encoder\.model\.{3 + 3 * n}\.{conv}", lambda x: f"encoder.head.{x[1]}.{x[2]}"),
        (rf"encoder\.model\.(\d+)\.{conv}", lambda x: f"encoder.stages.{stage(3)(x)}.down.{x[2]}.{x[3]}"),
        (rf"decoder\.model\.0\.{conv}", lambda x: f"decoder.stem.{x[1]}.{x[2]}"),
        (r"decoder\.model\.1\.lstm\.(.+)", lambda x: f"decoder.sequence.net.{x[1]}"),
        (r"decoder\.model\.(\d+)\.convtr\.(convtr|norm)\.(.+)",
         lambda x: f"decoder.stages.{stage(3)(x)}.up.{PART[x[2]]}.{x[3]}"),
        (rf"decoder\.model\.(\d+)\.(block\.1|block\.3|shortcut)\.{conv}",
         lambda x: f"decoder.stages.{stage(4)(x)}.units.0.{UNIT[x[2]]}.{x[3]}.{x[4]}"),
        (rf"decoder\.model\.{3 + 3 * n}\.{conv}", lambda x: f"decoder.head.{x[1]}.{x[2]}"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed", lambda x: f"quantizer.levels.{x[1]}.codebook"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed_avg", lambda x: f"quantizer.levels.{x[1]}.embed_sum"),
        (r"quantizer\.vq\.layers\.(\d+)\._codebook\.cluster_size", lambda x: f"quantizer.levels.{x[1]}.cluster_size"),
    ]


@CONVERTERS.register("encodec")
class EncodecConverter(Converter):
    """EnCodec ``.th`` state dicts: the 24 kHz family (weight norm) and the 48 kHz stereo one (time group norm)."""

    source_patterns = ("*.th",)
    describe = "an EnCodec .th state dict (the encodec package's EncodecModel, 24 or 48 kHz)"

    def read(self, source: Path) -> Tokenizer:
        state = load_pickle(source, self.describe)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
            raise ConvertError(f"{source}: not an EnCodec state dict (a flat name -> tensor mapping); found {found}")
        return read_encodec(held_in_weight_norm(state, source), source)


def held_in_weight_norm(state: dict[str, Tensor], source: Path) -> dict[str, Tensor]:
    """An EnCodec state dict with its weights as ``weight_g`` / ``weight_v``: the 48 kHz family's plain weights
    split; a mix of both families refused."""
    if not grouped(state):
        return state
    plain = [k for k in state if re.search(r"\.(conv|convtr)\.weight_[gv]$", k)]
    if plain:
        raise ConvertError(f"{source}: not an EnCodec state dict: group norms (conv.norm.*) beside weight-norm "
                           f"tensors ({plain[0]}); neither the 24 kHz nor the 48 kHz family")
    return split_weight_norm(state)


def read_encodec(state: dict[str, Tensor], source: Path | str, **architecture: object) -> Tokenizer:
    """The tokenizer of an EnCodec's tensors (the ``encodec`` package's names, weights as ``weight_g`` /
    ``weight_v``; ``source`` names them in errors: a file, or a model in memory); ``architecture``: what the tensors
    do not say (``encodec_config``'s keyword arguments)."""
    try:
        config, n = encodec_config(state, **architecture)
    except ConvertError as err:
        raise ConvertError(f"{source}: {err}") from None
    tensors = rename({k: v for k, v in state.items() if not k.endswith("._codebook.inited")}, encodec_rules(n))
    own = [r"quantizer\.steps", r"quantizer\.levels\.\d+\.initted"]
    return assemble(config, tensors, own)
