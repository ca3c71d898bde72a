"""Reconstruction quality after every decode step, and as a function of the number of steps.

Two tables from one pass over the data (images are encoded once per batch):
- ``per_step``: the soft preview of each step of an N-step decode (``SFTok.decode_steps(...,
  previews=True)``): how quality builds up along one trajectory (step 0 = single-step decode);
- ``sweep``: the final reconstruction (``SFTok.decode_tokens``) for several step counts, the
  paper's step ablation;
- ``teacher_context`` (when a teacher is given): each pass of the same trajectory again, with the teacher's
  codes at the slots committed so far. Multi-step decoding can only pay off through what committed codes
  say; this is what the decoder makes of them when they are right, so the gap to ``per_step`` is the price of
  its own wrong commits (``committed_accuracy``: the share of each step's new commits equal to the teacher's).
Sampling is seeded per (seed, step count, batch index), so a row does not depend on which other
rows were requested. PSNR/SSIM always; LPIPS and rFID when the metric suite has their weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from .data import ImageBatch, batch_images
from .fid import FID_PROTOCOL, FeatureStats, fid_from_stats, to_uint8
from .image_metrics import psnr, ssim
from .metric_suite import MetricSuite
from .model_mi import teacher_forced_logits
from .seeding import derived_generator

METRIC_PROTOCOL = {
    "psnr": "per image, BT.601 Y channel, data range 1, mean over images",
    "ssim": "per image, Y channel, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, mean over images",
    "lpips": "lpips package v0.1, AlexNet backbone, inputs scaled to [-1, 1], mean over images",
    "rfid": FID_PROTOCOL,
}


@dataclass(frozen=True)
class QualityRow:
    """Mean metrics over the images for one reconstruction setting; *_sem = standard error of the mean."""

    label: str
    num_steps: int
    step: int | None  # 0-based step of a per-step row; None for sweep rows
    num_images: int
    mask_ratio_in: float | None  # fraction of slots masked when this step's pass ran (per-step rows)
    psnr: float
    psnr_sem: float
    ssim: float
    ssim_sem: float
    lpips: float | None = None
    lpips_sem: float | None = None
    rfid: float | None = None


@dataclass(frozen=True)
class StepQuality:
    per_step: tuple[QualityRow, ...]
    sweep: tuple[QualityRow, ...]
    num_steps: int
    temperature: float
    seed: int
    num_images: int
    skipped: Mapping[str, str] = field(default_factory=dict)
    protocol: Mapping[str, str] = field(default_factory=lambda: dict(METRIC_PROTOCOL))
    teacher_context: tuple[QualityRow, ...] = ()  # per step, the teacher's codes at the committed slots
    committed_accuracy: tuple[float, ...] = ()  # per step, share of the newly committed codes equal to the teacher's


def _mean_sem(values: list[np.ndarray]) -> tuple[float, float]:
    v = np.concatenate(values).astype(np.float64)
    sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), sem


class _Accumulator:
    """Per-image metric values and Inception statistics of one reconstruction setting."""

    def __init__(self, suite: MetricSuite) -> None:
        self.suite = suite
        self.values: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": [], "lpips": []}
        self.mask_ratios: list[float] = []
        self.features = FeatureStats(suite.feature_dim) if suite.inception is not None else None

    def update(self, recon: torch.Tensor, images: torch.Tensor) -> None:
        recon = recon.float().clamp(0.0, 1.0)
        self.values["psnr"].append(psnr(recon, images).cpu().numpy())
        self.values["ssim"].append(ssim(recon, images).cpu().numpy())
        if self.suite.lpips is not None:
            self.values["lpips"].append(self.suite.lpips(recon, images).cpu().numpy())
        if self.features is not None:
            self.features.update(self.suite.inception(to_uint8(recon)))

    def row(self, label: str, num_steps: int, step: int | None, real: FeatureStats | None) -> QualityRow:
        p, p_sem = _mean_sem(self.values["psnr"])
        s, s_sem = _mean_sem(self.values["ssim"])
        lp, lp_sem = _mean_sem(self.values["lpips"]) if self.values["lpips"] else (None, None)
        rfid = None
        if self.features is not None and real is not None and self.features.count >= 2:
            rfid = fid_from_stats(real, self.features)
        ratio = float(np.mean(self.mask_ratios)) if self.mask_ratios else None
        return QualityRow(label, num_steps, step, sum(v.size for v in self.values["psnr"]), ratio, p, p_sem, s, s_sem,
                          lp, lp_sem, rfid)


@dataclass(frozen=True)
class TeacherContext:
    """Each pass of one decode run again with the teacher's codes at the slots it had committed (same mask)."""

    logits: tuple[torch.Tensor, ...]  # per step, (B, S, V) float32
    right: np.ndarray  # (T,) newly committed codes equal to the teacher's
    committed: np.ndarray  # (T,) newly committed codes


@torch.no_grad()
def teacher_context_passes(model: torch.nn.Module, ids: torch.Tensor, records: Sequence, targets: torch.Tensor
                           ) -> TeacherContext:
    """:class:`TeacherContext` of ``SFTok.decode_steps`` ``records`` decoded from token ``ids``, given the teacher's
    codes ``targets`` (B, S): what the decoder makes of its commits when they are right, and how many were."""
    z_q = model.quantize.get_codebook_entry(model.check_token_ids(ids))
    logits = tuple(teacher_forced_logits(model.decoder, z_q, targets, r, model.config.mask_id).float() for r in records)
    right = np.array([float(((r.ids_out == targets) & r.newly_committed).sum()) for r in records])
    committed = np.array([float(r.newly_committed.sum()) for r in records])
    return TeacherContext(logits, right, committed)


@torch.no_grad()
def evaluate_steps(model: torch.nn.Module, batches: Iterable[torch.Tensor | ImageBatch], num_steps: int | None = None,
                   sweep: Sequence[int] = (1, 2, 4, 8, 16), temperature: float | None = None, seed: int = 0,
                   suite: MetricSuite | None = None, progress: bool = False,
                   teacher: torch.nn.Module | None = None) -> StepQuality:
    """Per-step and step-sweep reconstruction metrics of an SFTok ``model`` over image ``batches`` in [0, 1].

    Models without a pixel head need a teacher attached (``model.attach_teacher``) to render pixels.
    ``teacher``: also measure each step with the teacher's codes at the committed slots (``teacher_context``).
    """
    suite = suite or MetricSuite(skipped={"lpips": "no metric suite given", "rfid": "no metric suite given"})
    num_steps = int(num_steps or model.config.num_steps)
    temperature = float(model.config.randomize_temperature if temperature is None else temperature)
    sweep = tuple(dict.fromkeys(int(n) for n in sweep))
    device = next(model.parameters()).device
    per_step = [_Accumulator(suite) for _ in range(num_steps)]
    by_count = {n: _Accumulator(suite) for n in sweep}
    forced = [_Accumulator(suite) for _ in range(num_steps)] if teacher is not None else []
    right, committed = np.zeros(num_steps), np.zeros(num_steps)
    real = FeatureStats(suite.feature_dim) if suite.inception is not None else None
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="steps", unit="batch")
    for index, batch in enumerate(batches):
        images = batch_images(batch).to(device).float()
        _, info = model.encode(images, per_image=True)
        ids = info["min_encoding_indices"]
        records = model.decode_steps(ids, num_steps, temperature, derived_generator(device, seed, num_steps, index),
                                     previews=True)
        for acc, record in zip(per_step, records):
            acc.update(record.preview, images)
            acc.mask_ratios.append(record.mask_ratio_in)
        if teacher is not None:
            context = teacher_context_passes(model, ids, records, teacher.encode(images).long())
            for acc, record, logits in zip(forced, records, context.logits):
                acc.update(model.render_soft(logits), images)
                acc.mask_ratios.append(record.mask_ratio_in)
            right, committed = right + context.right, committed + context.committed
        for n, acc in by_count.items():
            acc.update(model.decode_tokens(ids, n, temperature, derived_generator(device, seed, n, index)), images)
        if real is not None:
            real.update(suite.inception(to_uint8(images)))
    if not per_step[0].values["psnr"]:
        raise ValueError("batches: no images were given")
    rows = tuple(acc.row(f"step {s + 1}/{num_steps}", num_steps, s, real) for s, acc in enumerate(per_step))
    sweep_rows = tuple(acc.row(f"{n} steps", n, None, real) for n, acc in by_count.items())
    forced_rows = tuple(acc.row(f"step {s + 1}/{num_steps}, teacher's codes committed", num_steps, s, real)
                        for s, acc in enumerate(forced))
    return StepQuality(rows, sweep_rows, num_steps, temperature, seed, rows[0].num_images, dict(suite.skipped),
                       teacher_context=forced_rows,
                       committed_accuracy=tuple(float(h / t) if t else float("nan") for h, t in zip(right, committed))
                       if forced else ())
