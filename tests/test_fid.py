"""Fréchet distance against a direct NumPy/SciPy computation; the Inception loader's safety and errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from discotok.metrics.fid import (
    FeatureStats,
    InceptionWeightsMissing,
    features_of,
    frechet_distance,
    frechet_distance_of,
    load_inception,
)


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula, as pytorch-fid / the TF evaluator compute it."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def stats_of(x: np.ndarray, batch: int = 7) -> FeatureStats:
    stats = FeatureStats(x.shape[1])
    for start in range(0, len(x), batch):
        stats.update(torch.from_numpy(x[start : start + batch]))
    return stats


@pytest.mark.parametrize(("n", "m"), [(200, 150), (20, 30), (20, 300)], ids=["full-rank", "low-rank", "mixed"])
def test_frechet_distance_matches_scipy(n: int, m: int) -> None:
    rng = np.random.default_rng(0)
    dim = 48
    a = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    b = rng.normal(loc=0.5, size=(m, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    expected = scipy_fid(a, b)
    sa, sb = stats_of(a), stats_of(b)
    assert (sa.centred() is None) == (n > dim) and (sb.centred() is None) == (m > dim)
    assert frechet_distance_of(sa, sb) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(*sa.mean_cov(), *sb.mean_cov()) == pytest.approx(expected, rel=1e-6)
    # Saved and restored statistics give the same distance; a set against itself is 0.
    assert frechet_distance_of(FeatureStats.from_state(sa.state()), sb) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance_of(sa, stats_of(a, batch=5))) < 1e-6 * expected


def test_missing_weights_name_the_file(tmp_path) -> None:
    with pytest.raises(InceptionWeightsMissing, match=r"weights-inception-2015-12-05-6726825d.pth from torch-fidelity"):
        load_inception(tmp_path / "nope.pth")
    assert issubclass(InceptionWeightsMissing, FileNotFoundError)


def test_pickled_code_in_a_weights_file_is_refused(tmp_path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(ValueError, match="not a plain state dict of tensors"):
        load_inception(path)
    assert not (tmp_path / "pwned").exists()


def test_random_inception_loads_and_gives_2048_features(inception_path) -> None:
    net = load_inception(inception_path)
    feats = features_of(net, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.std() > 0
    wrong = inception_path.parent / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(ValueError, match="not the FID InceptionV3's weights"):
        load_inception(wrong)
