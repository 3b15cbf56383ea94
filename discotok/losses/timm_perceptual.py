"""A perceptual loss on any timm backbone, by model name, with weights from a local file."""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from discotok.losses.perceptual import SWITCH_OFF, FrozenNetwork, MissingWeightsError, check_pair, unit_channels
from discotok.registry import LOSSES

OUTPUTS = ("features", "logits", "patches")


class TimmBackbone(FrozenNetwork):
    """A frozen timm model: its feature maps (``output="features"``), its logits (``"logits"``) or
    its final patch features as one map (``"patches"``: a ViT's patch tokens without the class and
    register tokens, on their grid; a convnet's last feature map).

    ``forward`` takes images in [-1, 1] and applies the model's own normalisation (its
    pretrained mean and std), after resizing to ``input_size`` when given. ``model_kwargs`` go to
    ``timm.create_model`` (e.g. ``{"img_size": 224}``). ``config_key`` names the setting that
    holds the weights path in messages.
    """

    def __init__(
        self,
        model: str,
        weights: str | os.PathLike | None,
        output: str = "features",
        input_size: int | None = None,
        model_kwargs: dict | None = None,
        config_key: str = "loss.perceptual.weights",
        switch_off: str = SWITCH_OFF,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"timm backbone output must be one of {OUTPUTS}, got {output!r}")
        if weights is None:
            raise MissingWeightsError(
                f"no weights file given for timm model {model!r}: set {config_key}=/path/to/file "
                f"(.safetensors or .pth, e.g. from the Hugging Face repo timm/{model}), {switch_off}"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"weights file {str(path)!r} for timm model {model!r} does not exist: put the model's pretrained "
                f"state dict there (.safetensors or .pth, e.g. from the Hugging Face repo timm/{model}), "
                f"or set {config_key}=/path/to/file, {switch_off}"
            )
        if not timm.is_model(model):
            raise ValueError(f"{model!r} is not a timm model name (see timm.list_models())")
        kwargs = dict(model_kwargs or {})
        if output == "patches":
            kwargs.setdefault("num_classes", 0)
        try:
            self.net = timm.create_model(
                model, pretrained=True, features_only=output == "features", pretrained_cfg_overlay={"file": str(path)},
                **kwargs,
            )
        except RuntimeError as err:
            raise ValueError(f"{path} does not hold weights of timm model {model!r}: {err}") from None
        self.output = output
        self.input_size = input_size
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps (one per level) or ``[logits]`` of images in [-1, 1]."""
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        x = (x.add(1).div(2) - self.mean) / self.std
        if self.output == "patches":
            return [self.patch_map(self.net.forward_features(x), x.shape[-2:])]
        out = self.net(x)
        return list(out) if self.output == "features" else [out]

    def patch_map(self, h: Tensor, size: tuple[int, int]) -> Tensor:
        """``forward_features`` output -> (B, C, h, w): a ViT's patch tokens on their grid, a convnet's map as is."""
        if h.ndim == 4:
            return h
        tokens = h[:, getattr(self.net, "num_prefix_tokens", 0) :]
        patch = self.net.patch_embed.patch_size
        grid = (size[0] // patch[0], size[1] // patch[1])
        if grid[0] * grid[1] != tokens.shape[1]:
            raise ValueError(f"timm model gave {tokens.shape[1]} patch tokens for a {grid[0]}x{grid[1]} patch grid")
        return rearrange(tokens, "b (h w) c -> b c h w", h=grid[0], w=grid[1])


@LOSSES.register("timm_perceptual")
class TimmPerceptualLoss(nn.Module):
    """Perceptual loss on a timm backbone (e.g. ``convnext_small``), weights from ``weights``.

    ``output="features"``: LPIPS without learned layers — per level, the squared distance of
    channel-normalised features summed over channels and averaged over positions, summed
    over levels. ``output="logits"``: the MSE between the classifier outputs (TiTok's
    ConvNeXt loss, with ``input_size=224``). Parts: ``{"timm_<model>": value}``.
    """

    def __init__(self, model: str, weights: str, output: str = "features", input_size: int | None = None) -> None:
        super().__init__()
        self.key = f"timm_{model}"
        self.net = TimmBackbone(model, weights, output, input_size)

    def forward(self, x_hat: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        check_pair(x_hat, x, "timm perceptual loss")
        outs = self.net(torch.cat([x_hat, x]))
        if self.net.output == "logits":
            a, b = outs[0].float().chunk(2)
            loss = F.mse_loss(a, b)
        else:
            loss = x.new_zeros((), dtype=torch.float32)
            for h in outs:
                a, b = unit_channels(h.float()).chunk(2)
                loss = loss + (a - b).pow(2).sum(dim=1).mean()
        return loss, {self.key: loss.detach()}
