"""Ids for downstream generators and LLMs, each helper with its exact inverse.

* ``LLMVocab``: shift ids into a language model's vocabulary after its text tokens, with
  begin/end-of-image (or -audio) tokens around each sequence, and back with validation.
* Residual ids (B, N, depth) -> one stream: ``flatten`` (token-major: all levels of token 0,
  then token 1, ...; optionally a separate id range per level) and ``delay`` (MusicGen's delay
  pattern: level d is shifted right by d steps, so step t holds level 0 of token t, level 1 of
  token t-1, ...; a model predicts all levels of one step at once), with ``unflatten`` /
  ``undelay``.
* LFQ / binary ids <-> their bits (``to_bits`` / ``from_bits``, big-endian: the code channels in order for a
  quantizer with ``bit_order="big"``, the default; reversed for ``"little"``, Open-MAGVIT2's order).

Every inverse checks what it is given (range, padding, begin/end tokens, shape) and raises
``ValueError`` saying where it is wrong, rather than returning silently wrong ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from discotok.quantizers.bits import MAX_BITS, bits_to_ids, ids_to_bits


def _check_int(ids: Tensor, what: str) -> None:
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise ValueError(f"{what} must be an integer torch.Tensor, got {getattr(ids, 'dtype', type(ids).__name__)}")


def _check_range(ids: Tensor, low: int, high: int, what: str) -> None:
    if ids.numel() and (int(ids.min()) < low or int(ids.max()) >= high):
        bad = ((ids < low) | (ids >= high)).nonzero()[0].tolist()
        raise ValueError(f"{what} must lie in [{low}, {high - 1}]; position {bad} holds {int(ids[tuple(bad)])}")


@dataclass(frozen=True)
class LLMVocab:
    """Codebook ids placed at ``offset`` in a larger vocabulary, with optional begin/end tokens.

    ``LLMVocab.after(text_vocab_size, codebook_size)`` puts the codes right after the text
    tokens and the begin/end tokens right after the codes; ``vocab_size`` is the size the LLM's
    embedding needs.
    """

    offset: int
    codebook_size: int
    begin_id: int | None = None
    end_id: int | None = None

    def __post_init__(self) -> None:
        if self.offset < 0 or self.codebook_size < 1:
            raise ValueError(f"need offset >= 0 and codebook_size >= 1, got {self.offset}, {self.codebook_size}")
        for name in ("begin_id", "end_id"):
            special = getattr(self, name)
            if special is not None and self.offset <= special < self.offset + self.codebook_size:
                raise ValueError(f"{name} {special} falls inside the code range [{self.offset}, {self.offset + self.codebook_size - 1}]")
        if self.begin_id is not None and self.begin_id == self.end_id:
            raise ValueError(f"begin_id and end_id must differ, both are {self.begin_id}")

    @classmethod
    def after(cls, text_vocab_size: int, codebook_size: int, special_tokens: bool = True) -> "LLMVocab":
        """Codes at ``text_vocab_size``, then (if ``special_tokens``) begin and end tokens."""
        end = text_vocab_size + codebook_size
        return cls(text_vocab_size, codebook_size, end if special_tokens else None, end + 1 if special_tokens else None)

    @property
    def vocab_size(self) -> int:
        """The smallest vocabulary holding every id this map emits."""
        specials = [s for s in (self.begin_id, self.end_id) if s is not None]
        return max([self.offset + self.codebook_size, *[s + 1 for s in specials]])

    def encode(self, ids: Tensor) -> Tensor:
        """Ids (B, L) in [0, codebook_size) -> LLM tokens (B, [1 +] L [+ 1])."""
        _check_int(ids, "ids")
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (B, L) (flatten residual ids first), got {tuple(ids.shape)}")
        _check_range(ids, 0, self.codebook_size, "ids")
        parts = [ids.long() + self.offset]
        if self.begin_id is not None:
            parts.insert(0, ids.new_full((ids.shape[0], 1), self.begin_id, dtype=torch.long))
        if self.end_id is not None:
            parts.append(ids.new_full((ids.shape[0], 1), self.end_id, dtype=torch.long))
        return torch.cat(parts, dim=1)

    def decode(self, tokens: Tensor) -> Tensor:
        """LLM tokens (B, [1 +] L [+ 1]) -> ids (B, L); checks the begin/end tokens and the code range."""
        _check_int(tokens, "tokens")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (B, L), got {tuple(tokens.shape)}")
        start = 1 if self.begin_id is not None else 0
        stop = tokens.shape[1] - (1 if self.end_id is not None else 0)
        if stop - start < 1:
            raise ValueError(f"tokens of length {tokens.shape[1]} hold no code after the begin/end tokens")
        if self.begin_id is not None and not bool((tokens[:, 0] == self.begin_id).all()):
            raise ValueError(f"every row must start with the begin token {self.begin_id}; got {tokens[:, 0].tolist()}")
        if self.end_id is not None and not bool((tokens[:, -1] == self.end_id).all()):
            raise ValueError(f"every row must end with the end token {self.end_id}; got {tokens[:, -1].tolist()}")
        body = tokens[:, start:stop].long()
        _check_range(body, self.offset, self.offset + self.codebook_size, "code tokens")
        return body - self.offset


def flatten(ids: Tensor, codebook_size: int | None = None) -> Tensor:
    """Residual ids (B, N, depth) -> (B, N * depth), token-major. With ``codebook_size`` K, level
    d's ids become ``d * K + id`` (a separate range per level, K * depth ids in all)."""
    _check_int(ids, "ids")
    if ids.ndim != 3:
        raise ValueError(f"ids must have shape (B, N, depth), got {tuple(ids.shape)}")
    ids = ids.long()
    if codebook_size is not None:
        _check_range(ids, 0, codebook_size, "ids")
        ids = ids + torch.arange(ids.shape[-1], device=ids.device) * codebook_size
    return rearrange(ids, "b n d -> b (n d)")


def unflatten(tokens: Tensor, depth: int, codebook_size: int | None = None) -> Tensor:
    """Inverse of ``flatten``: (B, N * depth) -> (B, N, depth), checking each level's range."""
    _check_int(tokens, "tokens")
    if tokens.ndim != 2 or depth < 1 or tokens.shape[1] % depth:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not split into tokens of depth {depth}")
    ids = rearrange(tokens.long(), "b (n d) -> b n d", d=depth)
    if codebook_size is not None:
        for level in range(depth):
            _check_range(ids[..., level], level * codebook_size, (level + 1) * codebook_size, f"level {level} tokens")
        ids = ids - torch.arange(depth, device=ids.device) * codebook_size
    return ids


def delay(ids: Tensor, pad_id: int) -> Tensor:
    """MusicGen's delay pattern: (B, N, depth) -> (B, N + depth - 1, depth); level d starts at step d,
    the ``depth - 1`` empty slots of each level hold ``pad_id`` (pick one outside the codebook)."""
    _check_int(ids, "ids")
    if ids.ndim != 3:
        raise ValueError(f"ids must have shape (B, N, depth), got {tuple(ids.shape)}")
    b, n, depth = ids.shape
    out = ids.new_full((b, n + depth - 1, depth), pad_id, dtype=torch.long)
    for level in range(depth):
        out[:, level : level + n, level] = ids[..., level]
    return out


def undelay(steps: Tensor, pad_id: int) -> Tensor:
    """Inverse of ``delay``: (B, N + depth - 1, depth) -> (B, N, depth); the padding must be ``pad_id``."""
    _check_int(steps, "steps")
    if steps.ndim != 3 or steps.shape[1] < steps.shape[2]:
        raise ValueError(f"steps must have shape (B, N + depth - 1, depth) with N >= 1, got {tuple(steps.shape)}")
    depth = steps.shape[2]
    n = steps.shape[1] - depth + 1
    ids = torch.stack([steps[:, level : level + n, level] for level in range(depth)], dim=-1).long()
    for level in range(depth):
        pads = torch.cat([steps[:, :level, level], steps[:, level + n :, level]], dim=1)
        if bool((pads != pad_id).any()):
            raise ValueError(f"level {level} must hold pad_id {pad_id} in its first {level} and last {depth - 1 - level} steps")
    if bool((ids == pad_id).any()):
        raise ValueError(f"pad_id {pad_id} appears among the ids; the steps are misaligned or pad_id is a code")
    return ids


def to_bits(ids: Tensor, num_bits: int) -> Tensor:
    """Ids (...) of a 2^num_bits codebook (LFQ, binary) -> bits (..., num_bits) as uint8, first bit most significant."""
    _check_int(ids, "ids")
    if not 1 <= num_bits <= MAX_BITS:
        raise ValueError(f"num_bits must lie in [1, {MAX_BITS}], got {num_bits}")
    if num_bits < MAX_BITS:
        _check_range(ids, 0, 2**num_bits, "ids")
    return ids_to_bits(ids, num_bits).to(torch.uint8)


def from_bits(bits: Tensor) -> Tensor:
    """Inverse of ``to_bits``: bits (..., num_bits) holding only 0 and 1 -> int64 ids (...)."""
    if not isinstance(bits, Tensor) or bits.ndim < 1:
        raise ValueError("bits must be a tensor of shape (..., num_bits)")
    if bits.dtype != torch.bool and bool(((bits != 0) & (bits != 1)).any()):
        raise ValueError("bits must hold only 0 and 1")
    return bits_to_ids(bits.bool())
