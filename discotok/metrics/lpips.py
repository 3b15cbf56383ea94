"""LPIPS as an evaluation metric: an adapter over the training losses' LPIPS network.

The network itself is ``discotok.losses.perceptual.LPIPS`` (built from local weight files,
``forward(x_hat, x)`` on images in [-1, 1] returning per-sample distances (B,), raising a
``FileNotFoundError`` subclass naming the missing file). This module only builds it for
evaluation; it never defines a second LPIPS network.
"""

from __future__ import annotations

import os

import torch
from torch import nn


class LPIPSUnavailable(ImportError):
    """This install has no LPIPS network (``discotok.losses.perceptual``)."""


def load_lpips(weights: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The LPIPS network with the local weights ``weights``, in eval mode on ``device``."""
    try:
        from discotok.losses.perceptual import LPIPS
    except ImportError as err:
        raise LPIPSUnavailable(
            "LPIPS needs discotok.losses.perceptual (the perceptual loss of training), which this install lacks; "
            "leave out --lpips-weights"
        ) from err
    return LPIPS(weights).to(device).eval()
