"""bf16 against fp32 on the same inputs: how many ids agree and how much the headline quality moves.

``discotok eval --precision bf16`` (or ``auto`` where it resolves to bf16) encodes and decodes every
batch a second time in fp32 (untimed) and feeds both to ``Fp32Comparison``, so a user can judge the
faster precision by its own figures.
"""

from __future__ import annotations

import copy

from discotok.eval.metrics import EvalBatch, Metric


def ids_identical(ids: EvalBatch, reference: EvalBatch) -> tuple[int, int]:
    """How many of the valid ids of ``ids`` equal those of ``reference`` (per level for residual ids), of how many."""
    a, b = ids.valid_ids(), reference.valid_ids()
    if a.shape != b.shape:
        raise ValueError(f"ids of shape {tuple(a.shape)} cannot be compared with fp32 ids of shape {tuple(b.shape)}")
    return int((a == b).sum()), a.numel()


class Fp32Comparison:
    """Accumulates ids agreement and the headline quality of the fp32 pass.

    ``quality`` is a fresh copy of the evaluation's headline metric (PSNR for images, SI-SNR
    for audio); ``compute(figures)`` takes the lower-precision figures that hold the same key.
    """

    def __init__(self, quality: Metric) -> None:
        self.quality = copy.deepcopy(quality)
        self.same = self.total = 0

    def update(self, batch: EvalBatch, reference: EvalBatch) -> None:
        """One batch in the evaluated precision and the same batch in fp32."""
        same, total = ids_identical(batch, reference)
        self.same += same
        self.total += total
        self.quality.update(reference)

    def compute(self, figures: dict) -> dict[str, float]:
        """``ids_identical_vs_fp32``, ``<quality>_fp32`` and ``<quality>_change_vs_fp32`` (evaluated minus fp32)."""
        name = self.quality.name
        reference = self.quality.compute()[name]
        return {"ids_identical_vs_fp32": self.same / max(self.total, 1), f"{name}_fp32": reference,
                f"{name}_change_vs_fp32": figures[name] - reference}
