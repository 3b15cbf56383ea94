"""Data-driven starts for linear layers, fitted once on the first training batch (as k-means starts a
VQ codebook): the principal components of the inputs for an encoder, least squares to the targets for a
decoder. Both use rank 0's batch and broadcast the result, so every DDP rank starts alike."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from discotok.nn.distributed import broadcast_, rank


@torch.no_grad()
def pca_init_(layer: nn.Conv2d, samples: Tensor, scale: float) -> None:
    """Set the 1x1 convolution ``layer`` (C -> k) to the top k principal directions of ``samples`` (M, C),
    centred and whitened (each output has standard deviation ``scale`` on the samples)."""
    k = layer.out_channels
    if samples.shape[0] < 2:
        raise ValueError(f"a PCA start needs at least 2 samples, got {samples.shape[0]}")
    flat = samples.float()
    mean = flat.mean(0)
    _, s, v = torch.linalg.svd(flat - mean, full_matrices=False)
    if v.shape[0] < k:
        raise ValueError(f"a PCA start of {k} outputs needs at least {k} samples of {flat.shape[1]} values, "
                         f"got {flat.shape[0]}")
    std = (s[:k] / (flat.shape[0] - 1) ** 0.5).clamp(min=1e-6)
    weight = v[:k] / std[:, None] * scale
    _copy_broadcast(layer, weight, -weight @ mean)


@torch.no_grad()
def least_squares_init_(layer: nn.Conv2d, inputs: Tensor, targets: Tensor, ridge: float = 1e-3) -> None:
    """Set the convolution ``layer`` (F -> C; F = its in-channels times its kernel area, in ``unfold``'s order) to
    the ridge-regularised least-squares affine map from ``inputs`` (M, F) to ``targets`` (M, C). The bias is
    fitted free (centred data); the ridge is ``ridge`` times the centred Gram matrix's mean diagonal, so the fit
    does not depend on the inputs' units and directions the batch barely spans (tokens projected from fewer
    code channels, neighbours that repeat at the edges) get small weights, not large ones that blow up once
    training moves the tokens off that batch's subspace."""
    x, y = inputs.float(), targets.float()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc
    gram = gram + ridge * gram.diagonal().mean().clamp(min=1e-12) * torch.eye(x.shape[1], device=x.device)
    weight = torch.linalg.solve(gram, xc.T @ (y - y_mean))  # (F, C)
    _copy_broadcast(layer, weight.T, y_mean - x_mean @ weight)


def _copy_broadcast(layer: nn.Conv2d, weight: Tensor, bias: Tensor) -> None:
    """Write a (out, in) ``weight`` and ``bias`` into the 1x1 ``layer``, rank 0's values on every rank."""
    if rank() == 0:
        layer.weight.copy_(weight.reshape(layer.weight.shape))
        layer.bias.copy_(bias)
    broadcast_(layer.weight.data, layer.bias.data)


@torch.no_grad()
def zero_(layer: nn.Conv2d) -> None:
    """Zero a layer's weight and bias (the branch beside a data-driven linear path starts silent)."""
    layer.weight.zero_()
    if layer.bias is not None:
        layer.bias.zero_()
