"""Per-step and step-sweep quality on a random-init tiny SFTok with a fake feature extractor.

Random-weight Inception would give meaningless FID, so the rFID path is checked with a tiny
hand-made feature function and against a direct recomputation, never against a reference value.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.data import ImageBatch
from analysis.fid import FeatureStats, fid_from_stats, to_uint8
from analysis.image_metrics import psnr, ssim
from analysis.metric_suite import MetricSuite
from analysis.seeding import derived_generator
from analysis.steps import evaluate_steps


def colour_features(images_uint8: torch.Tensor) -> torch.Tensor:
    """A 6-d stand-in for Inception: per-channel mean and standard deviation."""
    x = images_uint8.double() / 255.0
    return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


def mean_abs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(1)


SUITE = MetricSuite(lpips=mean_abs, inception=colour_features, feature_dim=6)


def test_per_step_and_sweep_tables(tiny_model, photos) -> None:
    batches = [photos[:3], ImageBatch(photos[3:], tuple("def"))]
    res = evaluate_steps(tiny_model, batches, num_steps=4, sweep=(1, 2, 4, 2), temperature=1.0, seed=3, suite=SUITE)
    assert [r.step for r in res.per_step] == [0, 1, 2, 3]
    assert [r.num_steps for r in res.sweep] == [1, 2, 4]  # duplicates dropped, order kept
    assert res.num_images == 6 and all(r.num_images == 6 for r in res.per_step + res.sweep)
    assert res.per_step[0].mask_ratio_in == 1.0
    assert [round(r.mask_ratio_in, 4) for r in res.per_step] == sorted(
        [round(r.mask_ratio_in, 4) for r in res.per_step], reverse=True)
    for row in res.per_step + res.sweep:
        assert np.isfinite([row.psnr, row.ssim, row.lpips, row.rfid]).all()
        assert row.psnr_sem > 0 and row.rfid >= 0
    assert res.skipped == {}
    # Recompute the 2-step sweep row directly: same seeds, same encode batches.
    vals, lp, feats, real = [], [], FeatureStats(6), FeatureStats(6)
    with torch.no_grad():
        for index, images in enumerate([photos[:3], photos[3:]]):
            ids = tiny_model.encode(images)[1]["min_encoding_indices"]
            recon = tiny_model.decode_tokens(ids, 2, 1.0, derived_generator("cpu", 3, 2, index))
            vals.append(psnr(recon, images))
            lp.append(mean_abs(recon, images))
            feats.update(colour_features(to_uint8(recon)))
            real.update(colour_features(to_uint8(images)))
    row = res.sweep[1]
    assert row.psnr == pytest.approx(torch.cat(vals).double().mean().item(), abs=1e-5)
    assert row.lpips == pytest.approx(torch.cat(lp).double().mean().item(), abs=1e-6)
    assert row.rfid == pytest.approx(fid_from_stats(real, feats), rel=1e-5)  # summation order differs between CPUs
    again = evaluate_steps(tiny_model, batches, num_steps=4, sweep=(1, 2, 4), temperature=1.0, seed=3, suite=SUITE)
    assert again.per_step == res.per_step and again.sweep == res.sweep


def test_step_zero_preview_is_the_single_step_reconstruction(tiny_model, photos) -> None:
    """A 1-step decode is one all-masked pass, exactly what step 0 of any decode renders."""
    res = evaluate_steps(tiny_model, [photos[:2]], num_steps=3, sweep=(1,), seed=0)
    assert res.per_step[0].psnr == pytest.approx(res.sweep[0].psnr, abs=1e-5)
    assert res.per_step[0].ssim == pytest.approx(res.sweep[0].ssim, abs=1e-6)
    assert res.per_step[0].lpips is None and res.per_step[0].rfid is None
    assert set(res.skipped) == {"lpips", "rfid"}
    with torch.no_grad():
        ids = tiny_model.encode(photos[:2], per_image=True)[1]["min_encoding_indices"]
        one = tiny_model.decode_tokens(ids, 1)
    assert res.sweep[0].psnr == pytest.approx(psnr(one, photos[:2]).double().mean().item(), abs=1e-5)
    assert res.sweep[0].ssim == pytest.approx(ssim(one, photos[:2]).double().mean().item(), abs=1e-6)


def test_empty_input_is_an_error(tiny_model) -> None:
    with pytest.raises(ValueError, match="no images"):
        evaluate_steps(tiny_model, [], num_steps=2, sweep=(1,))


def test_stage_one_model_renders_through_the_attached_teacher(tiny_teacher, photos) -> None:
    from core import SFTok, create_config

    torch.manual_seed(0)
    model = SFTok(create_config("tiny", has_pixel_head=False)).eval()
    with pytest.raises(RuntimeError, match="attach_teacher"):
        evaluate_steps(model, [photos[:2]], num_steps=2, sweep=(1,))
    model.attach_teacher(tiny_teacher)
    res = evaluate_steps(model, [photos[:2]], num_steps=2, sweep=(2,))
    with torch.no_grad():
        ids = model.encode(photos[:2], per_image=True)[1]["min_encoding_indices"]
        final = model.decode_tokens(ids, 2, None, derived_generator("cpu", 0, 2, 0))  # hard codes via the teacher
    assert res.sweep[0].psnr == pytest.approx(psnr(final, photos[:2]).double().mean().item(), abs=1e-5)
