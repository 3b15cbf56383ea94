"""``patch``: the PatchGAN discriminator of pix2pix / VQGAN (taming's ``NLayerDiscriminator``)."""

from __future__ import annotations

from torch import Tensor, nn

from discotok.discriminators.base import DiscriminatorOutput
from discotok.nn.conv import group_norm
from discotok.registry import DISCRIMINATORS

NORMS = ("batch", "group", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after each inner convolution."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return group_norm(channels)
    return nn.Identity()


@DISCRIMINATORS.register("patch")
class PatchDiscriminator(nn.Module):
    """Images (B, C, H, W) -> one real/fake logit per overlapping patch, (B, 1, h, w).

    ``num_layers`` stride-2 4x4 convolutions (widths ``channels * min(2^i, 8)``), one stride-1
    convolution and a stride-1 output convolution, LeakyReLU(0.2) between; with the
    defaults (3 layers, 64 channels) each logit sees a 70x70 patch. ``norm`` is ``batch``
    (taming, LlamaGen), ``group`` or ``none``. Weights start as in taming: convolutions
    N(0, 0.02), norm scales N(1, 0.02). The feature maps after every activation are
    returned for feature matching.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"patch discriminator norm must be one of {NORMS}, got {norm!r}")
        if num_layers < 1:
            raise ValueError(f"patch discriminator needs num_layers >= 1, got {num_layers}")
        bias = norm == "none"
        blocks = [nn.Sequential(nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2))]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            blocks.append(
                nn.Sequential(nn.Conv2d(width, out, 4, stride, 1, bias=bias), norm_layer(norm, out), nn.LeakyReLU(0.2))
            )
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(width, 1, 4, 1, 1)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return DiscriminatorOutput(logits=[self.head(x)], features=[features])


def init_weights(module: nn.Module) -> None:
    """taming's initialisation: conv weights N(0, 0.02); norm scales N(1, 0.02), shifts 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
