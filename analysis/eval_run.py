"""One evaluation of tokenizers at scale: rFID, IS, PSNR, SSIM, LPIPS and codebook usage per model x steps.

``run_evaluation`` is the library entry point of ``python -m analysis eval`` (and of an app job runner):
any model folder ``core.tokenizer.load_tokenizer`` reads, one pass over the data (each batch is encoded
once per model and decoded once per step count and temperature), the reals' Inception statistics computed
once and shared by every model and step count (or read from a saved reference). Under torchrun each rank
evaluates its own share of the images (:mod:`analysis.rank_data`) and the sufficient statistics
(:mod:`analysis.eval_stats`) are all-reduced, so N ranks give the one-process numbers; partial sums are
checkpointed every few batches (:mod:`analysis.eval_checkpoint`) so a killed run resumes to the same result.

Sampling is seeded per (seed, step count, temperature, global index of the batch's first image): a resumed
run repeats the interrupted one exactly. With N ranks the batches hold other images, so at temperature > 0
the samples (not their distribution) differ from one process; a deterministic decode (temperature 0, or a
one-step tokenizer) gives the one-process numbers to float rounding.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from core.tokenizer import Tokenizer, load_tokenizer

from .adm_reference import ReferenceStats, load_reference, save_reference
from .eval_checkpoint import fresh_or_resumed, load_checkpoint, save_checkpoint
from .eval_dist import Ranks, all_reduce_sum, barrier, join_process_group
from .eval_stats import Accumulator, InceptionScoreStats, MeanStats, joint_state, load_joint_state
from .fid import FID_PROTOCOL, FeatureStats, frechet_distance, inception_network, to_uint8
from .image_metrics import psnr, ssim
from .metric_suite import load_metric_suite
from .report import to_jsonable
from .rank_data import iter_rank_batches, rank_share
from .seeding import derived_generator
from .usage import has_codebook_per_position, usage_from_counts

FEATURE_DIM, NUM_CLASSES = 2048, 1008  # torch-fidelity's pool features and (unbiased) logits
IS_PROTOCOL = ("exp(mean KL(p(y|x) || p(y))) over ALL images as one split (torch-fidelity isc_splits=1, no shuffle), "
               "softmax of inception-v3-compat logits_unbiased (1008 classes) in float64")
Progress = Callable[[int, int | None], None]  # (images done, images in all) of this rank


class EvaluationCancelled(RuntimeError):
    """``should_cancel`` said stop; the partial statistics are saved, ``resume=True`` continues."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything a run depends on; the resumable part of it is checked against the checkpoint."""

    models: tuple[str, ...]
    data: tuple[str, ...]
    out: str
    steps: tuple[int, ...] = (1, 2, 4, 8)
    temperatures: tuple[float | None, ...] = (None,)  # None: each model's own default
    num_images: int | None = None  # None: every image of ``data``
    batch_size: int = 32
    seed: int = 0
    inception_weights: str | None = None
    teacher: str | None = None
    reference: str | None = None  # read the reals' statistics from this .npz instead of computing them
    save_reference: str | None = None  # write the reals' statistics computed by this run here
    lpips: bool = True
    lpips_net: str = "alex"
    lpips_weights: str | None = None
    checkpoint_every: int = 20  # batches between partial-statistics checkpoints
    resume: bool = False
    device: str = "cpu"


@dataclass
class EvalResult:
    records: list[dict[str, Any]]  # one per model x steps x temperature; empty on ranks other than 0
    timings: dict[str, float] = field(default_factory=dict)  # this rank's seconds per phase
    images_this_rank: int = 0


@dataclass
class _Setting:
    model: int
    steps: int
    temperature: float | None
    features: FeatureStats = field(default_factory=lambda: FeatureStats(FEATURE_DIM))
    inception_score: InceptionScoreStats = field(default_factory=lambda: InceptionScoreStats(NUM_CLASSES))
    metrics: dict[str, MeanStats] = field(default_factory=lambda: {k: MeanStats() for k in ("psnr", "ssim", "lpips")})

    def parts(self) -> dict[str, Accumulator]:
        return {"fid": self.features, "is": self.inception_score, **self.metrics}

    def state(self) -> dict[str, np.ndarray]:
        return joint_state(self.parts())

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        load_joint_state(self.parts(), state)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - start
        return now


def unique_labels(paths: Sequence[str]) -> list[str]:
    """Paths as labels; a repeated path gets ``#2``, ``#3``... so results never merge."""
    seen: dict[str, int] = {}
    labels = []
    for p in paths:
        seen[p] = seen.get(p, 0) + 1
        labels.append(p if seen[p] == 1 else f"{p}#{seen[p]}")
    return labels


def protocol_of(image_size: int) -> str:
    return f"{FID_PROTOCOL}; image size {image_size}"


def _temperature_code(temperature: float | None) -> int:
    return -1 if temperature is None else int(round(float(temperature) * 1e6))


def _load_models(config: EvalConfig, device: torch.device) -> list[Tokenizer]:
    from core import MaskGITVQGAN, load_pretrained_as

    teacher = load_pretrained_as(config.teacher, MaskGITVQGAN, "--teacher").eval() if config.teacher else None
    models = [load_tokenizer(path, device, teacher) for path in config.models]
    for m in models:
        m.module.eval()
    sizes = {m.info.image_size for m in models}
    if len(sizes) > 1:
        raise ValueError(f"--model: the models work at different image sizes {sorted(sizes)}; rFID compares images "
                         "at one size, evaluate them in separate runs")
    return models


def _settings(config: EvalConfig, models: Sequence[Tokenizer]) -> tuple[list[_Setting], list[str]]:
    """One setting per model x steps x temperature the model can decode; notes for the ones it cannot."""
    settings, notes = [], []
    for mi, model in enumerate(models):
        too_many = [s for s in config.steps if s > model.info.max_steps]
        if too_many:
            notes.append(f"{config.models[mi]}: {model.info.family} decodes in at most {model.info.max_steps} "
                         f"step(s); skipped steps {too_many}")
        for steps in (s for s in config.steps if s <= model.info.max_steps):
            temps = config.temperatures if model.info.max_steps > 1 else (None,)  # one-step decoders do not sample
            settings.extend(_Setting(mi, steps, t) for t in dict.fromkeys(temps))
    if not settings:
        raise ValueError("--steps: no model can decode at the requested step counts")
    return settings, notes


def _resume_settings(config: EvalConfig, ranks: Ranks) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that resumes it (JSON-normalised)."""
    keys = ("models", "data", "steps", "temperatures", "num_images", "batch_size", "seed", "teacher", "reference",
            "lpips", "lpips_net")
    return json.loads(json.dumps({**{k: getattr(config, k) for k in keys}, "world_size": ranks.world}))


class _Run:
    """The mutable state of one rank's pass over its images."""

    def __init__(self, config: EvalConfig, ranks: Ranks) -> None:
        self.config, self.ranks = config, ranks
        self.models = _load_models(config, ranks.device)
        self.image_size = self.models[0].info.image_size
        self.protocol = protocol_of(self.image_size)
        self.settings, self.notes = _settings(config, self.models)
        self.reference = load_reference(config.reference) if config.reference else None
        if self.reference is not None:
            self.reference.check_compatible(self.protocol, self.image_size)
        self.real_features = FeatureStats(FEATURE_DIM)
        self.real_score = InceptionScoreStats(NUM_CLASSES)
        self.usage = [np.zeros((m.info.num_tokens, m.info.codebook_size), np.int64) for m in self.models]
        # ReVQ's ids are local to their position's own codebook: its codes are (position, id) pairs
        self.per_position = [has_codebook_per_position(m) for m in self.models]
        self.inception = inception_network(config.inception_weights, ["2048", "logits_unbiased"], ranks.device)
        suite = load_metric_suite(lpips=config.lpips, fid=False, lpips_net=config.lpips_net,
                                  lpips_weights=config.lpips_weights, device=ranks.device)
        self.lpips, self.lpips_note = suite.lpips, suite.skipped.get("lpips")
        self.position = 0
        self.timer = _Timer()

    # -- state -------------------------------------------------------------------------------------
    def parts(self) -> dict[str, Accumulator]:
        return {"real/fid": self.real_features, "real/is": self.real_score,
                **{f"s{si}": setting for si, setting in enumerate(self.settings)}}

    def state(self) -> dict[str, np.ndarray]:
        out = joint_state(self.parts())
        for mi, counts in enumerate(self.usage):
            out[f"m{mi}/usage"] = counts
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        load_joint_state(self.parts(), state)
        self.usage = [np.array(state[f"m{mi}/usage"], np.int64) for mi in range(len(self.models))]

    # -- one batch ---------------------------------------------------------------------------------
    @torch.no_grad()
    def inception_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.inception(to_uint8(images))
        return features, logits

    @torch.no_grad()
    def update(self, images: torch.Tensor, first_index: int) -> None:
        t = time.perf_counter()
        if self.reference is None:
            features, logits = self.inception_outputs(images)
            t = self.timer.add("inception", t)
            self.real_features.update(features)
            self.real_score.update_logits(logits)
            t = self.timer.add("statistics", t)
        for mi, model in enumerate(self.models):
            ids = model.encode(images)
            t = self.timer.add("model", t)
            flat = (np.arange(ids.shape[1])[None, :] * model.info.codebook_size + ids.cpu().numpy()).ravel()
            self.usage[mi] += np.bincount(flat, minlength=self.usage[mi].size).reshape(self.usage[mi].shape)
            t = self.timer.add("statistics", t)
            for setting in (s for s in self.settings if s.model == mi):
                generator = derived_generator(self.ranks.device, self.config.seed, setting.steps,
                                              _temperature_code(setting.temperature), first_index)
                recon = model.decode(ids, setting.steps, setting.temperature, generator).float().clamp(0.0, 1.0)
                t = self.timer.add("model", t)
                setting.metrics["psnr"].update(psnr(recon, images))
                setting.metrics["ssim"].update(ssim(recon, images))
                if self.lpips is not None:
                    setting.metrics["lpips"].update(self.lpips(recon, images))
                t = self.timer.add("pixel_metrics", t)
                features, logits = self.inception_outputs(recon)
                t = self.timer.add("inception", t)
                setting.features.update(features)
                setting.inception_score.update_logits(logits)
                t = self.timer.add("statistics", t)

    # -- results -----------------------------------------------------------------------------------
    def real_reference(self) -> ReferenceStats:
        if self.reference is not None:
            return self.reference
        return ReferenceStats.from_features(self.real_features, self.protocol, self.image_size, "the evaluated images")

    def records(self, reference: ReferenceStats) -> list[dict[str, Any]]:
        real_is = self.real_score.score() if self.real_score.count else None
        out = []
        for setting in self.settings:
            model = self.models[setting.model]
            counts = self.usage[setting.model]
            usage = usage_from_counts(counts, int(counts[0].sum()), per_position=self.per_position[setting.model])
            count = setting.features.count
            rfid = (frechet_distance(reference.mu, reference.sigma, setting.features.mean, setting.features.covariance)
                    if count >= 2 else None)
            metric = {k: v.mean for k, v in setting.metrics.items()}
            sem = {k: v.sem for k, v in setting.metrics.items()}
            out.append({
                "model": self.config.models[setting.model], "label": unique_labels(self.config.models)[setting.model],
                "family": model.info.family, "steps": setting.steps, "temperature": setting.temperature,
                "num_images": count, "rfid": rfid, "is": setting.inception_score.score() if count else None,
                "psnr": metric["psnr"], "psnr_sem": sem["psnr"], "ssim": metric["ssim"], "ssim_sem": sem["ssim"],
                "lpips": metric["lpips"], "lpips_sem": sem["lpips"],
                "lpips_note": None if self.lpips is not None else self.lpips_note,
                "codebook_usage": usage.utilisation, "codebook_used_codes": usage.used_codes,
                "codebook_entropy_bits": usage.entropy_bits, "codebook_perplexity": usage.perplexity,
                "codebook_per_position": usage.per_position,
                "real_is": real_is, "protocol": self.protocol, "is_protocol": IS_PROTOCOL,
                "image_size": self.image_size, "reference": reference.source,
                "reference_num_images": reference.num_images, "reference_protocol": reference.protocol,
                "seed": self.config.seed, "world_size": self.ranks.world, "batch_size": self.config.batch_size,
            })
        return out


def run_evaluation(config: EvalConfig, progress: Progress | None = None,
                   should_cancel: Callable[[], bool] | None = None) -> EvalResult:
    """Evaluate ``config.models`` on ``config.data``; rank 0 writes ``out/results.json`` and returns the records.

    ``progress(done, total)`` after every batch (this rank's images; ``total`` None when ``num_images`` is not
    set); ``should_cancel()`` is asked after every batch: True saves the partial statistics and raises
    :class:`EvaluationCancelled` (``resume=True`` continues).
    """
    if config.batch_size < 1 or config.checkpoint_every < 1:
        raise ValueError("batch_size and checkpoint_every: must be >= 1")
    if config.num_images is not None and config.num_images < 2:
        raise ValueError(f"num_images: rFID needs at least 2 images, got {config.num_images}")
    ranks = join_process_group(config.device)
    settings = _resume_settings(config, ranks)
    ckpt = fresh_or_resumed(config.out, ranks.rank, ranks.world, config.resume)
    run = _Run(config, ranks)
    if ckpt.exists():
        state, run.position = load_checkpoint(ckpt, settings)
        run.load_state(state)
    share = None if config.num_images is None else rank_share(config.num_images, ranks.rank, ranks.world)
    batches = iter_rank_batches(list(config.data), run.image_size, config.batch_size, config.num_images,
                                ranks.rank, ranks.world, skip=run.position)
    since = 0
    t = time.perf_counter()
    for batch, indices in batches:
        t = run.timer.add("data", t)
        run.update(batch.images.to(ranks.device).float(), indices[0])
        run.position += len(indices)
        since += 1
        t = time.perf_counter()
        if since >= config.checkpoint_every:
            save_checkpoint(ckpt, run.state(), run.position, settings)
            since = 0
        t = run.timer.add("checkpoint", t)
        if progress is not None:
            progress(run.position, share)
        if should_cancel is not None and should_cancel():
            save_checkpoint(ckpt, run.state(), run.position, settings)
            raise EvaluationCancelled(f"cancelled after {run.position} images; resume to continue")
        t = time.perf_counter()
    save_checkpoint(ckpt, run.state(), run.position, settings)  # a kill during the reduce loses nothing
    run.load_state(all_reduce_sum(run.state(), ranks))
    records: list[dict[str, Any]] = []
    if ranks.is_main:
        if run.settings[0].features.count < 2:
            raise ValueError("data: fewer than 2 images; rFID needs at least 2")
        reference = run.real_reference()
        records = run.records(reference)
        if config.save_reference and run.reference is None:
            save_reference(config.save_reference, reference)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(to_jsonable({"records": records, "notes": run.notes}), indent=1) + "\n",
                       encoding="utf-8")
        os.replace(tmp, out / "results.json")
    barrier(ranks)
    ckpt.unlink(missing_ok=True)
    return EvalResult(records, dict(run.timer.seconds), run.position)
