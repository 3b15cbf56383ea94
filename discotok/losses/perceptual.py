"""LPIPS (Zhang et al. 2018, https://arxiv.org/abs/1801.03924) on VGG16, weights from local files only.

Nothing is downloaded. Two weight files are needed:

* torchvision's VGG16 ImageNet weights, ``vgg16-397923af.pth`` (the only file a user must
  place; by default looked for where torchvision caches it, ``$TORCH_HOME/hub/checkpoints/``);
* LPIPS's five 1x1 "lin" layers (a few KB), which torchmetrics ships inside its wheel.

A missing file raises ``MissingWeightsError`` (a ``FileNotFoundError``) naming the path,
the file to put there and how to switch the loss off. Files load with
``torch.load(weights_only=True)`` or from safetensors, never by unpickling code.
"""

from __future__ import annotations

import importlib.resources
import os
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from discotok.registry import LOSSES

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
# torchvision's vgg16().features ends relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 at these indices
VGG16_STAGE_ENDS = (4, 9, 16, 23, 30)
VGG16_STAGE_CHANNELS = (64, 128, 256, 512, 512)
SWITCH_OFF = "or switch the perceptual loss off with loss.perceptual.weight=0"


class MissingWeightsError(FileNotFoundError):
    """A pretrained network's weights file is not where the configuration says it is."""


def default_vgg16_path() -> Path:
    """Where torchvision caches ``vgg16-397923af.pth`` (``$TORCH_HOME/hub/checkpoints/``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def bundled_lpips_lin_path() -> Path:
    """LPIPS's VGG lin-layer weights as shipped in torchmetrics' wheel."""
    return Path(str(importlib.resources.files("torchmetrics.functional.image") / "lpips_models" / "vgg.pth"))


def load_weights(path: str | os.PathLike, missing_hint: str) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a plain torch state dict (``weights_only``).

    Raises ``MissingWeightsError`` with ``missing_hint`` when the file does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"weights file {str(path)!r} does not exist: {missing_hint}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    # mmap: a whole VGG16 file is 528 MB, of which LPIPS reads 59; older (non-zip) files cannot be mapped
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


class FrozenNetwork(nn.Module):
    """A fixed pretrained network used as a loss or metric.

    Its weights come from files at construction, so they are kept out of the parent's
    ``state_dict`` (checkpoints do not carry them) and a parent's ``load_state_dict`` keeps
    the loaded values. Always in eval mode, no parameter requires a gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_state_dict_post_hook(FrozenNetwork._drop_own_keys)
        self.register_load_state_dict_pre_hook(FrozenNetwork._keep_own_values)

    def freeze(self) -> None:
        """Call at the end of ``__init__``: eval mode, no gradients."""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenNetwork:
        return super().train(False)

    @staticmethod
    def _drop_own_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]

    @staticmethod
    def _keep_own_values(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        for owner, sub in module.named_modules():
            persistent = {**sub._parameters, **{k: v for k, v in sub._buffers.items() if k not in sub._non_persistent_buffers_set}}
            for name, value in persistent.items():
                if value is not None:
                    state_dict.setdefault(f"{prefix}{owner}{'.' if owner else ''}{name}", value.detach())


def check_pair(x_hat: Tensor, x: Tensor, what: str) -> None:
    """``ValueError`` unless both are image batches (B, 3, H, W) of one shape."""
    if x_hat.shape != x.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} needs two image batches (B, 3, H, W) of one shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}")


class LPIPS(FrozenNetwork):
    """LPIPS distance with the VGG16 backbone: ``forward(x_hat, x)`` -> (B,) for images in [-1, 1].

    Args:
        vgg_weights: torchvision's ``vgg16-397923af.pth`` (or a safetensors file with the same
            ``features.*`` keys); None looks in torchvision's cache folder.
        lin_weights: LPIPS's lin layers (keys ``lin{i}.model.1.weight``); None uses the copy
            inside torchmetrics' wheel.
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = None, lin_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        vgg_path = Path(vgg_weights).expanduser() if vgg_weights else default_vgg16_path()
        state = load_weights(
            vgg_path,
            f"LPIPS needs torchvision's VGG16 ImageNet weights there: download {VGG16_URL} to that path "
            f"(or set loss.perceptual.vgg_weights=/path/to/{VGG16_FILE}), {SWITCH_OFF}",
        )
        features = make_layers(cfgs["D"])
        if any(k.startswith("features.") for k in state):  # a whole VGG16: keep its feature layers
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        try:
            features.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{vgg_path} does not hold VGG16 weights: {err}") from None
        starts = (0, *VGG16_STAGE_ENDS[:-1])
        self.stages = nn.ModuleList(features[a:b] for a, b in zip(starts, VGG16_STAGE_ENDS))
        lin_path = Path(lin_weights).expanduser() if lin_weights else bundled_lpips_lin_path()
        lin_state = load_weights(lin_path, "LPIPS's lin layers come with torchmetrics (pip install torchmetrics)")
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in VGG16_STAGE_CHANNELS)
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(lin_state[f"lin{i}.model.1.weight"])
        # LPIPS's input scaling, for images in [-1, 1]
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Per-sample distances (B,) between two image batches in [-1, 1]."""
        check_pair(x_hat, x, "LPIPS")
        h = (torch.cat([x_hat, x]) - self.shift) / self.scale
        distance = x.new_zeros(x.shape[0], dtype=torch.float32)
        for stage, lin in zip(self.stages, self.lins):
            h = stage(h)
            a, b = unit_channels(h).chunk(2)
            distance = distance + lin((a - b).pow(2)).mean(dim=(1, 2, 3)).float()
        return distance


def unit_channels(h: Tensor, eps: float = 1e-10) -> Tensor:
    """LPIPS's feature normalisation: divide by the l2 norm over channels (plus ``eps``)."""
    return h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


@LOSSES.register("lpips")
class LPIPSLoss(nn.Module):
    """Training loss: the batch mean of ``LPIPS(x_hat, x)``; parts ``{"lpips": value}``."""

    def __init__(self, vgg_weights: str | None = None, lin_weights: str | None = None) -> None:
        super().__init__()
        self.net = LPIPS(vgg_weights, lin_weights)

    def forward(self, x_hat: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.net(x_hat, x).mean()
        return loss, {"lpips": loss.detach()}
