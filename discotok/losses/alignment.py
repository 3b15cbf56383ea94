"""Representation alignment (REPA, https://arxiv.org/abs/2410.06940; VA-VAE / GigaTok style).

An intermediate feature map of the tokenizer — a transformer block's patch tokens on their
grid (``vit`` / ``titok`` / ``flexible`` encoders, ``titok`` / ``flow`` decoders) or a
convolution's output (the ``grid`` encoder's feature grid) — goes through a small MLP
projector; the loss is the negative cosine similarity, per position, to a frozen teacher's
patch features resized (bilinear, antialiased) to that grid. The teacher is any timm model,
built by name with weights from a local file (``discotok.losses.timm_perceptual.TimmBackbone``,
``output="patches"``: e.g. DINOv2's ``vit_base_patch14_dinov2.lvd142m``).

``layer`` picks the feature: ``"encoder"`` or ``"decoder"`` chooses the middle transformer block
(or the grid encoder's last stage), any other value is a module path inside the tokenizer, such
as ``"encoder.transformer.blocks.1"``. The projector trains with the tokenizer; the teacher has
no gradient and stays out of checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.losses.timm_perceptual import TimmBackbone
from discotok.nn.modes import eval_mode
from discotok.registry import LOSSES

if TYPE_CHECKING:
    from discotok.tokenizers.tokenizer import Tokenizer

SWITCH_OFF = "or switch the alignment loss off with loss.alignment.weight=0"


class _Probed(Exception):
    """Stops the probing forward pass once the aligned layer has run."""


def default_layer(tokenizer: Tokenizer, side: str) -> str:
    """The module path REPA aligns by default on ``side`` (``encoder`` / ``decoder``) of ``tokenizer``."""
    part = tokenizer.encoder if side == "encoder" else tokenizer.decoder
    layer = part.alignment_layer()
    if layer is not None:
        return f"{side}.{layer}"
    raise ValueError(f"no default alignment layer in the {type(part).__name__} {side}; name a module path as layer")


def feature_grid(output: Tensor | tuple, image_size: tuple[int, int], patch_size: int | None) -> Tensor:
    """A hooked module's output as a map (B, C, h, w): a conv map as is, transformer tokens
    (patches first) on the (H/p, W/p) patch grid."""
    h = output[0] if isinstance(output, (tuple, list)) else output
    if h.ndim == 4:
        return h
    if h.ndim != 3 or patch_size is None:
        raise ValueError(f"alignment layer gave a tensor of shape {tuple(h.shape)}; need (B, C, h, w) or (B, L, C) patch tokens")
    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    return rearrange(h[:, : grid[0] * grid[1]], "b (h w) c -> b c h w", h=grid[0], w=grid[1])


@LOSSES.register("repa")
class RepresentationAlignment(nn.Module):
    """Negative cosine similarity between projected tokenizer features and a frozen teacher's.

    Args:
        tokenizer: the tokenizer being trained (its layer is probed for the feature width).
        model: timm model name of the teacher; ``weights``: its local weights file.
        layer: ``"encoder"``, ``"decoder"`` or a module path inside the tokenizer.
        input_size: the teacher's input side (images are resized to it); None keeps the size.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``{"img_size": 224}``).
        projector_width: hidden width of the 3-layer MLP projector (REPA's is 2048).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        model: str,
        weights: str,
        layer: str = "encoder",
        input_size: int | None = None,
        model_kwargs: dict | None = None,
        projector_width: int = 512,
    ) -> None:
        super().__init__()
        if not tokenizer.modality.pixels:
            raise ValueError("representation alignment needs an image tokenizer")
        self.layer = default_layer(tokenizer, layer) if layer in ("encoder", "decoder") else layer
        self.teacher = TimmBackbone(model, weights, "patches", input_size, model_kwargs,
                                    config_key="loss.alignment.weights", switch_off=SWITCH_OFF)
        owner = self.layer.split(".")[0]
        if owner not in ("encoder", "decoder"):
            raise ValueError(f"alignment layer {self.layer!r} must lie in the tokenizer's encoder or decoder")
        self.patch_size = (tokenizer.encoder if owner == "encoder" else tokenizer.decoder).patch_size
        width, teacher_width = self._probe(tokenizer)
        self.projector = nn.Sequential(
            nn.Linear(width, projector_width), nn.SiLU(), nn.Linear(projector_width, projector_width), nn.SiLU(),
            nn.Linear(projector_width, teacher_width),
        )

    def _module(self, tokenizer: nn.Module) -> nn.Module:
        try:
            return tokenizer.get_submodule(self.layer)
        except AttributeError:
            raise ValueError(f"alignment layer {self.layer!r} is not a module of the tokenizer") from None

    @torch.no_grad()
    def _probe(self, tokenizer: Tokenizer) -> tuple[int, int]:
        """Feature widths of the tokenizer's layer and of the teacher, from one small forward each.

        The tokenizer runs in eval mode (no training counters move, no k-means) and only up to the layer.
        """
        size = tokenizer.modality.image_size or (64, 64)
        x = torch.zeros(1, 3, *size, device=next(tokenizer.parameters()).device)
        features: list[Tensor] = []

        def stop(module: nn.Module, args: tuple, output: Tensor) -> None:
            features.append(output)
            raise _Probed

        handle = self._module(tokenizer).register_forward_hook(stop)
        try:
            with eval_mode(tokenizer):
                tokenizer(x)
        except _Probed:
            pass
        finally:
            handle.remove()
        if not features:
            raise ValueError(f"alignment layer {self.layer!r} did not run in the tokenizer's forward pass")
        student = feature_grid(features[0], size, self.patch_size)
        return student.shape[1], self.teacher(x)[0].shape[1]

    @contextmanager
    def capture(self, tokenizer: nn.Module) -> Iterator[list[Tensor]]:
        """Collect the layer's outputs of the forward passes run inside the ``with`` block."""
        features: list[Tensor] = []
        handle = self._module(tokenizer).register_forward_hook(lambda module, args, output: features.append(output))
        try:
            yield features
        finally:
            handle.remove()

    def forward(self, features: list[Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss ``-mean cos(projector(feature), teacher)`` over positions, for the images ``x`` in [-1, 1]."""
        if not features:
            raise ValueError(f"alignment layer {self.layer!r} did not run in this forward pass")
        student = feature_grid(features[-1], tuple(x.shape[-2:]), self.patch_size)
        with torch.no_grad():
            target = self.teacher(x)[0].float()
        target = F.interpolate(target, size=student.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        projected = self.projector(rearrange(student, "b c h w -> b h w c"))
        cosine = F.cosine_similarity(projected.float(), rearrange(target, "b c h w -> b h w c"), dim=-1).mean()
        return -cosine, {"alignment_cosine": cosine.detach()}
