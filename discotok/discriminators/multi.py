"""``multi``: several discriminators as one, e.g. multi-period + multi-scale STFT for audio.

``{"name": "multi", "discriminators": [{"name": "mpd", ...}, {"name": "msstft", ...}]}``
builds each part by registered name; the output lists every part's sub-discriminators in
order, so the adversarial terms (discotok/losses/adversarial.py) sum over all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from discotok.discriminators.base import DiscriminatorOutput
from discotok.registry import DISCRIMINATORS


@DISCRIMINATORS.register("multi")
class MultiDiscriminator(nn.Module):
    """The concatenation of the outputs of ``discriminators`` (each a ``DISCRIMINATORS`` spec)."""

    def __init__(self, discriminators: Sequence[dict]) -> None:
        super().__init__()
        if not discriminators:
            raise ValueError("multi needs at least one discriminator spec")
        if any(spec.get("name") == "multi" for spec in discriminators):
            raise ValueError("multi cannot nest another multi; list the parts directly")
        self.parts = nn.ModuleList(DISCRIMINATORS.build(spec) for spec in discriminators)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        outs = [part(x) for part in self.parts]
        return DiscriminatorOutput(
            [logits for o in outs for logits in o.logits], [feats for o in outs for feats in o.features]
        )
