"""Ids against a tokenizer: every check ``discotok decode`` makes before it decodes anything.

Image ids: dtype, depth, codebook range, token count and layout, and the manifest's shape,
codebook size and modality. Variable-length (audio) ids: the same over each item's valid
frames, the ``PAD_ID`` padding past them, and the manifest's sample rate, channels, hop
length and per-item frame and sample counts. Every failure is an ``ExtractError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from discotok.io import PAD_ID, ExtractError, LoadedIds, frames_from_padding
from discotok.layout import Layout
from discotok.tokenizers.config import DEFAULT_MODALITY
from discotok.tokenizers.tokenizer import Tokenizer

Fail = Callable[[str], ExtractError]


def _int64_ids(tokenizer: Tokenizer, arr: np.ndarray, fail: Fail) -> Tensor:
    """``arr`` as an int64 tensor, after the dtype checks."""
    if arr.dtype.kind not in "iu":
        raise fail(f"ids must have an integer dtype, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise fail(f"ids must lie in [0, {tokenizer.codebook_size - 1}]; got values up to {int(arr.max())}")
    return torch.from_numpy(arr.astype(np.int64))


def _check_codes(tokenizer: Tokenizer, ids: Tensor, fail: Fail) -> None:
    """Depth and codebook range of ids, through the quantizer's own check."""
    try:
        tokenizer.quantizer.check_ids(ids)
    except ValueError as err:
        raise fail(str(err).replace("(B, N", "(num_items, N")) from None
    if ids.shape[0] == 0:
        raise fail("holds no rows")


def _check_modality(tokenizer: Tokenizer, manifest: dict | None, fail: Fail) -> None:
    """The manifest's modality (version 1 and image manifests before audio: ``image``) against the tokenizer's."""
    mine = tokenizer.modality.name
    theirs = mine if manifest is None else manifest.get("modality", DEFAULT_MODALITY)
    if theirs != mine:
        raise fail(f"ids were made by an {theirs} tokenizer; this is an {mine} tokenizer")


def _check_manifest(tokenizer: Tokenizer, ids: Tensor, manifest: dict, fail: Fail) -> None:
    """Shape and codebook size recorded in the manifest against the ids and the tokenizer."""
    if list(ids.shape) != list(manifest.get("ids_shape", [])):
        raise fail(f"shape {tuple(ids.shape)} does not match the manifest's ids_shape {manifest.get('ids_shape')}")
    if manifest.get("codebook_size") != tokenizer.codebook_size:
        raise fail(
            f"ids were made with codebook size {manifest.get('codebook_size')}, "
            f"this tokenizer has {tokenizer.codebook_size}"
        )


def check_ids_array(
    tokenizer: Tokenizer, arr: np.ndarray, manifest: dict | None, source: Path
) -> tuple[Tensor, Layout]:
    """Validate ids for an image ``tokenizer`` (dtype, shape, depth, range, token count) without decoding.

    Returns the ids as an int64 tensor and the layout to decode them with; raises
    ``ExtractError`` naming ``source`` and the expected shape or range otherwise.
    """

    def fail(problem: str) -> ExtractError:
        return ExtractError(f"{source}: {problem}")

    _check_modality(tokenizer, manifest, fail)
    ids = _int64_ids(tokenizer, arr, fail)
    _check_codes(tokenizer, ids, fail)
    if manifest is None:
        try:
            layout = tokenizer.modality.default_layout(ids.shape[1])
        except ValueError as err:
            raise fail(str(err)) from None
    else:
        _check_manifest(tokenizer, ids, manifest, fail)
        layout = Layout.from_dict(manifest["layout"])
    if layout.kind == "sequence" and not 1 <= ids.shape[1] <= layout.num_tokens:
        raise fail(f"rows hold {ids.shape[1]} tokens; the sequence layout takes a prefix of 1..{layout.num_tokens}")
    if layout.kind != "sequence" and layout.num_tokens != ids.shape[1]:
        raise fail(f"rows hold {ids.shape[1]} tokens; the {layout.kind} layout {layout.shape} has {layout.num_tokens}")
    return ids, layout


def check_frame_ids(
    tokenizer: Tokenizer, loaded: LoadedIds
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate variable-length (audio) ids for ``tokenizer`` without decoding.

    Checks dtype, depth and codebook range over each item's valid frames, the ``PAD_ID`` padding
    past them, and against the manifest (when there is one): modality, shape, codebook size,
    sample rate, channels, hop length, and each item's frames against its sample count.
    Returns ids (B, N[, depth]) with the padding set to code 0, valid frames (B,) and samples
    (B,) or None; raises ``ExtractError`` naming the file otherwise.
    """
    source, manifest = loaded.path, loaded.manifest

    def fail(problem: str) -> ExtractError:
        return ExtractError(f"{source}: {problem}")

    _check_modality(tokenizer, manifest, fail)
    ids = _int64_ids(tokenizer, loaded.ids, fail)
    if ids.ndim < 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise fail(f"ids must have shape (num_items, frames[, depth]) with at least one frame, got {tuple(ids.shape)}")
    if manifest is not None:
        _check_manifest(tokenizer, ids, manifest, fail)
        for key, value in tokenizer.modality.format_fields().items():
            if key in manifest and manifest[key] != value:
                raise fail(f"ids were made with {key} {manifest[key]}, this tokenizer has {value}")
        if len(manifest["items"]) != ids.shape[0]:
            raise fail(f"the manifest lists {len(manifest['items'])} items for {ids.shape[0]} rows of ids")
    frames = loaded.frames
    frames = torch.from_numpy(frames_from_padding(loaded.ids) if frames is None else frames)
    if int(frames.min()) < 1 or int(frames.max()) > ids.shape[1]:
        raise fail(f"item frame counts must lie in 1..{ids.shape[1]} (the rows' width), got {frames.tolist()}")
    valid = torch.arange(ids.shape[1]) < frames[:, None]
    pad = (ids == PAD_ID).reshape(*valid.shape, -1).all(-1)
    for problem, where in (("holds the pad id {pad} inside its {n} valid frames", pad & valid),
                           ("holds ids past its {n} valid frames (expected the pad id {pad} there)", ~pad & ~valid)):
        if where.any():
            row = int(where.any(1).nonzero()[0])
            raise fail(f"row {row} " + problem.format(pad=PAD_ID, n=int(frames[row])))
    ids = ids.masked_fill(~valid.reshape(*valid.shape, *[1] * (ids.ndim - 2)), 0)
    _check_codes(tokenizer, ids, fail)
    samples = loaded.samples
    if samples is not None:
        samples = torch.from_numpy(samples)
        expected = tokenizer.modality.stored_frames(samples)
        if not torch.equal(expected, frames):
            row = int((expected != frames).nonzero()[0])
            segmented = " in its segments" if tokenizer.modality.segmenting else ""
            raise fail(
                f"row {row} has {int(frames[row])} frames of ids but {int(samples[row])} samples, which are "
                f"{int(expected[row])} frames{segmented} at this tokenizer's hop length {tokenizer.modality.hop_length}"
            )
    return ids, frames, samples
