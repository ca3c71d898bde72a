"""Per-step and step-sweep quality on a random-init tiny SFTok with a fake feature extractor.

Random-weight Inception would give meaningless FID, so the rFID path is checked with a tiny
hand-made feature function and against a direct recomputation, never against a reference value.
"""
from __future__ import annotations

import copy

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


class OwnCodesTeacher(torch.nn.Module):
    """A stand-in teacher whose 'true' codes are the model's own final decode (plus ``shift`` mod the codebook),
    drawn with the generator ``evaluate_steps`` uses for batch 0."""

    def __init__(self, model, num_steps: int, seed: int, shift: int) -> None:
        super().__init__()
        self.model, self.num_steps, self.seed, self.shift = model, num_steps, seed, shift

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        ids = self.model.encode(images, per_image=True)[1]["min_encoding_indices"]
        final = self.model.decode_steps(ids, self.num_steps, 1.0, derived_generator("cpu", self.seed, self.num_steps, 0))
        return (final[-1].ids_out + self.shift) % self.model.config.num_proxy_codes


def test_teacher_context_with_the_models_own_codes_is_its_own_trajectory(tiny_model, photos) -> None:
    """Committed codes never change, so when the 'teacher' codes are the model's own final decode, refilling the
    committed slots with them changes no pass: the two tables agree and every commit counts as right."""
    teacher = OwnCodesTeacher(tiny_model, 4, 5, shift=0)
    res = evaluate_steps(tiny_model, [photos[:3]], num_steps=4, sweep=(1,), temperature=1.0, seed=5, teacher=teacher)
    assert [r.step for r in res.teacher_context] == [0, 1, 2, 3]
    assert [r.psnr for r in res.teacher_context] == pytest.approx([r.psnr for r in res.per_step], abs=1e-6)
    assert res.committed_accuracy == (1.0, 1.0, 1.0, 1.0)
    plain = evaluate_steps(tiny_model, [photos[:3]], num_steps=4, sweep=(1,), temperature=1.0, seed=5)
    assert plain.per_step == res.per_step and plain.teacher_context == () and plain.committed_accuracy == ()


def test_teacher_context_with_other_codes_changes_every_pass_after_the_first(tiny_model, photos) -> None:
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.decoder.ffn[2].weight.mul_(30.0)  # peaked logits, so a changed context shows in the soft render
    teacher = OwnCodesTeacher(model, 4, 5, shift=1)  # every 'true' code differs from the model's commit
    res = evaluate_steps(model, [photos[:3]], num_steps=4, sweep=(1,), temperature=1.0, seed=5, teacher=teacher)
    assert res.committed_accuracy == (0.0, 0.0, 0.0, 0.0)
    assert res.teacher_context[0].psnr == pytest.approx(res.per_step[0].psnr, abs=1e-6)  # all slots masked: same pass
    # a random pixel head renders nearly flat images, so the changes are small, yet ~100x the float noise
    assert all(abs(t.psnr - o.psnr) > 5e-5 for t, o in zip(res.teacher_context[1:], res.per_step[1:]))
