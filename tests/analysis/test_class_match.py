"""Known answers for the colour-histogram class match used to judge the default generator."""
from __future__ import annotations

import pytest
import torch

from analysis.class_match import chi2_distance, class_match, colour_histograms


def solid(rgb: tuple[float, float, float], n: int = 1) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(n, 3, 4, 4).clone()


def test_histogram_bins_and_normalisation() -> None:
    image = torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # red -> bin (7, 0, 0) = 7 * 64 = 448
    image[0, :, 1, 1] = torch.tensor([0.5, 0.5, 0.99])  # bins (4, 4, 7) -> (4 * 8 + 4) * 8 + 7 = 295
    hist = colour_histograms(image)
    assert hist.shape == (1, 512) and float(hist.sum()) == pytest.approx(1.0)
    assert hist[0, 0] == 0.5 and hist[0, 448] == 0.25 and hist[0, 295] == 0.25  # two black pixels in bin 0


def test_chi2_of_disjoint_histograms_is_one_and_of_equal_ones_zero() -> None:
    red, blue = colour_histograms(solid((1, 0, 0))), colour_histograms(solid((0, 0, 1)))
    d = chi2_distance(torch.cat([red, blue]), torch.cat([red, blue]))
    torch.testing.assert_close(d, torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))


def test_class_match_counts_nearest_centroids() -> None:
    centroids = colour_histograms(torch.cat([solid((1, 0, 0)), solid((0, 0, 1)), solid((0, 1, 0))]))
    samples = torch.cat([solid((0.95, 0, 0), 2), solid((0, 0, 0.9)), solid((1, 0, 0))])  # last one is wrong
    result = class_match(colour_histograms(samples), torch.tensor([0, 0, 1, 1]), centroids)
    assert result.predicted == [0, 0, 1, 0]
    assert result.accuracy == 0.75 and result.per_class[:2] == [1.0, 0.5]
    assert result.chance == pytest.approx(1 / 3)
