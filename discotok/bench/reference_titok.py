"""bytedance/1d-tokenizer's TiTok for ``discotok bench reference titok``, run by its own code from a checkout.

Its code does not install from the package index: ``--reference-path DIR`` names a checkout (``git clone
https://github.com/bytedance/1d-tokenizer``, or its ``modeling/`` and ``configs/infer/TiTok/`` extracted with ``git
archive``), which goes first on ``sys.path`` for the reference's package ``modeling``. Each model is ``TiTok(config)``
of ``configs/infer/TiTok/NAME.yaml`` (read with OmegaConf, as the reference reads it), with the reference's own
seeded random init at published size, the two-stage models with their full MaskGIT-VQGAN pixel decoder; its
``state_dict`` is converted by ``discotok.convert.titok`` as ``discotok convert titok`` converts the saved folder. The
reference's side is ``TiTok.encode`` (ids: its ``min_encoding_indices``) and ``TiTok.decode_tokens`` clamped to [0, 1]
as its README does, in [0, 1] where ours take and give [-1, 1] (the mapping is in both sides' timings).
``accelerate``, which its quantizer imports for a multi-GPU gather used only in training, is replaced by a stub
module when it is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

from discotok.bench.reference import Pair
from discotok.commands.bench import TITOK_REFERENCE_CONFIGS

REFERENCE = "bytedance/1d-tokenizer's TiTok (its code, from --reference-path)"
BF16 = ("runs TiTok.encode / decode_tokens under torch.autocast(\"cpu\", torch.bfloat16): its ViTs and pixel decoder "
        "in bf16 and, unlike ours, its nearest-code search too (the search's autocast(enabled=False) is "
        "torch.cuda.amp's, which leaves CPU autocast on)")
CLONE = "git clone https://github.com/bytedance/1d-tokenizer DIR"


def labels(args: argparse.Namespace) -> list[str]:
    """The published models asked for (``--configs``)."""
    return list(args.configs)


def reference_files(path: str | None, name: str) -> Path:
    """The checkout's config ``configs/infer/TiTok/NAME.yaml``, or ``ValueError`` saying what is missing."""
    if path is None:
        raise ValueError("--reference-path DIR is needed: a checkout of bytedance/1d-tokenizer, whose code does not "
                         f"install from the package index ({CLONE})")
    root = Path(path)
    for needed in (Path("modeling") / "titok.py", Path("configs") / "infer" / "TiTok" / f"{name}.yaml"):
        if not (root / needed).is_file():
            raise ValueError(f"--reference-path {path}: no {needed}; expected a checkout of bytedance/1d-tokenizer "
                             f"({CLONE})")
    return root / "configs" / "infer" / "TiTok" / f"{name}.yaml"


def import_titok(root: Path) -> type:
    """The reference's ``TiTok`` class from the checkout at ``root`` (``ValueError`` when another ``modeling`` package
    is imported already)."""
    if "accelerate" not in sys.modules and importlib.util.find_spec("accelerate") is None:
        for name in ("accelerate", "accelerate.utils", "accelerate.utils.operations"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["accelerate.utils.operations"].gather = lambda x: x
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import modeling
    from modeling.titok import TiTok

    where = Path(modeling.__file__).resolve().parent
    if where != (root / "modeling").resolve():
        raise ValueError(f"--reference-path {root}: a package named modeling was imported from {where} instead")
    return TiTok


def build(args: argparse.Namespace, label: str) -> Pair:
    """The reference's TiTok ``label`` (random weights) and our conversion of it, on ``args.batch_size`` images."""
    from omegaconf import OmegaConf

    from discotok.convert.titok import titok_tokenizer

    path = reference_files(args.reference_path, TITOK_REFERENCE_CONFIGS[label])
    titok = import_titok(Path(args.reference_path).resolve())
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    torch.manual_seed(0)
    model = titok(config).eval()
    ours = titok_tokenizer(config, model.state_dict())

    def encode(x: torch.Tensor) -> torch.Tensor:
        return model.encode((x + 1) / 2)[1]["min_encoding_indices"].reshape(x.shape[0], -1)

    def decode(ids: torch.Tensor) -> torch.Tensor:
        return model.decode_tokens(ids).clamp(0, 1) * 2 - 1

    x, rates = ours.modality.bench_input(args.batch_size, 0.0)
    return Pair(f"TiTok-{label}", ours, x, rates, encode, decode, sum(p.numel() for p in model.parameters()) / 1e6)
