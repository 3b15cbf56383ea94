"""Fréchet distance between feature statistics, and the InceptionV3 of the standard FID protocol.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow FID
Inception ported to PyTorch, pool3 features of 2048 dims, inputs uint8 RGB resized to
299×299 inside the network with TF1-compatible bilinear interpolation), loaded from a
LOCAL weights file: ``weights-inception-2015-12-05-6726825d.pth`` from torch-fidelity's
release v0.2.0 (or the same tensors as ``.safetensors``). The file is read without
unpickling anything (``torch.load(weights_only=True)`` or safetensors); torch-fidelity only
ever sees an in-memory copy of the plain tensors.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from discotok.defaults import INCEPTION_FILE, default_inception_path  # noqa: F401  (re-exported)
from discotok.io import sha256_file

INCEPTION_SOURCE = "torch-fidelity's GitHub release v0.2.0 (the TensorFlow FID Inception converted to PyTorch)"
FEATURE_DIM = 2048


class InceptionWeightsMissing(FileNotFoundError):
    """The InceptionV3 weights file for rFID is not where it was looked for."""


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Plain tensors from ``.safetensors`` or a ``.pth`` state dict, never unpickling code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unsafe or broken file is refused with its reason
        raise ValueError(f"{path}: not a plain state dict of tensors ({type(err).__name__}: {str(err)[:300]})") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """torch-fidelity's FID InceptionV3 with the weights at ``path`` (default ``default_inception_path()``).

    Calling it on uint8 images (B, 3, H, W) returns a 1-tuple with the (B, 2048) pool3 features.
    """
    path = Path(path).expanduser() if path is not None else default_inception_path()
    if not path.is_file():
        raise InceptionWeightsMissing(
            f"rFID needs the InceptionV3 weights file {str(path)!r}, which does not exist: put "
            f"{INCEPTION_FILE} from {INCEPTION_SOURCE} there (or pass its path with --fid-weights, or set "
            "DISCOTOK_INCEPTION_WEIGHTS), or leave FID out with --no-fid"
        )
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save(read_state_dict(path), buffer)
    buffer.seek(0)
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", [str(FEATURE_DIM)], feature_extractor_weights_path=buffer)
    except RuntimeError as err:
        raise ValueError(f"{path}: not the FID InceptionV3's weights ({str(err)[:300]})") from err
    return net.to(device).eval()


def random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a RANDOMLY INITIALISED network of the FID InceptionV3's architecture to ``path`` (.safetensors).

    For tests and demos where the real weights cannot be fetched: distances computed with it
    are not FID and compare with nothing published. Convolutions get Kaiming init so features
    keep a sane scale.
    """
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def weights_sha256(path: str | os.PathLike) -> str:
    return sha256_file(Path(path))


class FeatureStats:
    """Running mean and covariance of feature vectors, accumulated in float64.

    While there are no more vectors than dimensions the vectors themselves are kept too:
    the covariance then has rank < dim and ``frechet_distance`` uses an exact low-rank form
    that costs an (n × n) SVD instead of two (dim × dim) eigendecompositions.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)
        self.rows: list[Tensor] | None = []

    def update(self, features: Tensor) -> None:
        f = features.detach().to("cpu", torch.float64).reshape(-1, self.dim)
        self.n += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f
        if self.rows is not None:
            self.rows.append(f)
            if self.n > self.dim:
                self.rows = None

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """Mean (D,) and unbiased covariance (D, D); needs at least two vectors."""
        if self.n < 2:
            raise ValueError(f"feature statistics need at least 2 images, got {self.n}")
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu, cov

    def centred(self) -> Tensor | None:
        """The kept vectors minus their mean (n, D), or None once there were more than D."""
        if self.rows is None or self.n < 2:
            return None
        f = torch.cat(self.rows)
        return f - f.mean(0)

    def state(self) -> dict[str, Tensor]:
        state = {"n": torch.tensor(self.n), "total": self.total, "outer": self.outer}
        if self.rows is not None and self.rows:
            state["rows"] = torch.cat(self.rows)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> "FeatureStats":
        stats = cls(state["total"].shape[0])
        stats.n, stats.total, stats.outer = int(state["n"]), state["total"].double(), state["outer"].double()
        stats.rows = [state["rows"].double()] if "rows" in state else None
        return stats


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``, in float64.

    ``tr((S1 S2)^½) = tr((S1^½ S2 S1^½)^½)``: two symmetric eigendecompositions (negative
    eigenvalues from rounding are clipped to 0).
    """
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    w, v = torch.linalg.eigh(sigma1)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    inner = root @ sigma2 @ root
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0)
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * eig.sqrt().sum()
    return float(value)


def frechet_distance_of(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two sets of features; exact low-rank form when both kept their vectors.

    With centred features A (n × D) and B (m × D): ``S_a = AᵀA/(n-1)``, ``S_b = BᵀB/(m-1)``, and
    the non-zero eigenvalues of ``S_a S_b`` are the squared singular values of ``A Bᵀ / sqrt((n-1)(m-1))``.
    """
    ca, cb = a.centred(), b.centred()
    if ca is None or cb is None:
        return frechet_distance(*a.mean_cov(), *b.mean_cov())
    mu_a, mu_b = a.total / a.n, b.total / b.n
    scale = ((a.n - 1) * (b.n - 1)) ** 0.5
    cross = torch.linalg.svdvals(ca @ cb.T).sum() / scale
    value = (mu_a - mu_b).square().sum() + ca.square().sum() / (a.n - 1) + cb.square().sum() / (b.n - 1) - 2 * cross
    return float(value)


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255], rounded as when saved to PNG."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def features_of(net: nn.Module, images: Tensor) -> Tensor:
    """(B, 2048) features of images in [-1, 1] (quantised to uint8 first, as the protocol says)."""
    with torch.inference_mode():
        device = next(net.parameters()).device
        return net(to_uint8(images).to(device))[0].float()
