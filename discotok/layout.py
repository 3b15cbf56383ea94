"""The plain description of how an encoder lays its N tokens out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """``kind`` is ``grid`` (shape (h, w), N = h*w), ``sequence`` (shape (N,)) or ``frames``.

    A ``sequence`` of N tokens is ordered: any prefix of 1..N of its tokens decodes.
    """

    kind: str
    shape: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def to_dict(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(kind=str(d["kind"]), shape=tuple(int(s) for s in d["shape"]))
