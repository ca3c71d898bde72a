"""Frechet distance known answers, streaming feature statistics, and missing-weight handling (no downloads)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from analysis.fid import INCEPTION_WEIGHTS_FILE, FeatureStats, find_inception_weights, frechet_distance, to_uint8
from analysis.metric_suite import load_metric_suite
from core.perceptual import MissingWeightsError


def test_frechet_distance_of_gaussians_from_given_statistics() -> None:
    # Diagonal: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2 = 5 + (1 + 1 + 0).
    fd = frechet_distance(np.zeros(3), np.diag([1.0, 4.0, 9.0]), np.array([1.0, 2.0, 0.0]), np.diag([4.0, 1.0, 9.0]))
    assert fd == pytest.approx(7.0, abs=1e-9)
    # Commuting, non-diagonal: rotate both covariances by the same orthogonal matrix.
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 2.0, 1.0, 0.25])
    fd = frechet_distance(np.ones(4), q @ np.diag(a) @ q.T, np.ones(4), q @ np.diag(b) @ q.T)
    assert fd == pytest.approx(float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum()), abs=1e-9)
    # General case against the textbook sqrtm formula.
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = m1 @ m1.T + np.eye(5), m2 @ m2.T + np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_streamed_feature_statistics_equal_numpy() -> None:
    feats = np.random.default_rng(2).normal(size=(103, 6)) * np.arange(1, 7)
    stats = FeatureStats(6)
    for chunk in np.array_split(feats, 5):
        stats.update(torch.from_numpy(chunk).float())
    assert stats.count == 103
    np.testing.assert_allclose(stats.mean, feats.astype(np.float32).mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.covariance, np.cov(feats.astype(np.float32), rowvar=False), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match=r"expected \(B, 6\)"):
        stats.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStats(3).covariance


def test_uint8_quantisation_rounds_and_clamps() -> None:
    x = torch.tensor([-0.5, 0.0, 0.6 / 255, 0.499, 1.0, 2.0]).view(1, 1, 1, 6)
    assert to_uint8(x).flatten().tolist() == [0, 0, 1, 127, 255, 255]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache, and every download entry point rigged to fail the test."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return home / "hub" / "checkpoints"


def test_missing_inception_weights_name_the_file_and_where_it_goes(no_network: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        find_inception_weights()
    message = str(err.value)
    assert INCEPTION_WEIGHTS_FILE in message
    assert str(no_network / INCEPTION_WEIGHTS_FILE) in message
    assert "nothing is downloaded" in message
    explicit = tmp_path / "elsewhere.pth"
    with pytest.raises(MissingWeightsError, match="elsewhere.pth"):
        find_inception_weights(explicit)


def test_metric_suite_without_weights_reports_instead_of_failing(no_network: Path) -> None:
    suite = load_metric_suite(lpips=True, fid=True)
    assert suite.lpips is None and suite.inception is None
    assert "alexnet-owt-7be5be79.pth" in suite.skipped["lpips"]
    assert str(no_network) in suite.skipped["lpips"]
    assert INCEPTION_WEIGHTS_FILE in suite.skipped["rfid"]
    off = load_metric_suite(lpips=False, fid=False)
    assert off.skipped == {"lpips": "disabled", "rfid": "disabled"}


def test_weights_found_in_the_hub_cache_are_used(no_network: Path) -> None:
    no_network.mkdir(parents=True)
    target = no_network / INCEPTION_WEIGHTS_FILE
    torch.save({"w": torch.zeros(1)}, target)
    assert find_inception_weights() == target
