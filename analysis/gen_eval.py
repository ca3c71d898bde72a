"""gFID, IS and precision/recall of the class-conditional generator against an ADM reference batch.

``run_generator_evaluation`` is the library entry point of ``python -m analysis gen-eval``. Sample i of the
``num_images`` has class ``i mod C`` and its own random generator seeded by (seed, i), used for the
generator's sampling and then the tokenizer's decode (one generator per sample: :func:`core.sampling.uniform`),
so the images are the same whatever the batch size and the number of processes; every (steps, guidance)
setting draws sample i from the same seed (common random numbers). Under torchrun rank r samples i = r,
r + N, ... (:mod:`analysis.rank_data`'s split); the Inception sufficient statistics are all-reduced as in
:mod:`analysis.eval_run`, the per-image pool features (needed by precision/recall, which is not a sum) are
gathered. Partial statistics and features are checkpointed per rank (:mod:`analysis.eval_checkpoint`), so a
killed run resumes to the uninterrupted numbers.

gFID is the Frechet distance of the samples' statistics to the reference's ``mu``/``sigma`` (for an ADM batch,
the TF evaluator's own statistics); precision/recall compare the samples' features with our Inception's
features of the reference's ``arr_0`` images (:mod:`analysis.reference_features`, cached).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from core import MaskGITGenerator, MaskGITVQGAN, load_pretrained_as
from core.tokenizer import Tokenizer, load_tokenizer

from .adm_reference import ReferenceStats, load_reference
from .eval_checkpoint import fresh_or_resumed, load_checkpoint, save_checkpoint
from .eval_dist import Ranks, all_reduce_sum, barrier, gather_rank_rows, join_process_group
from .eval_run import FEATURE_DIM, IS_PROTOCOL, NUM_CLASSES, EvaluationCancelled, protocol_of
from .eval_stats import Accumulator, InceptionScoreStats, joint_state, load_joint_state, prefixed, unprefixed
from .fid import INCEPTION_WEIGHTS_FILE, FeatureStats, frechet_distance, inception_network, to_uint8
from .precision_recall import K_NEIGHBOURS, PR_PROTOCOL, precision_recall
from .rank_data import rank_share
from .reference_features import reference_features
from .report import to_jsonable
from .seeding import derived_generator

ADM_SPLIT = 5000  # the ADM evaluator's Inception Score: mean over consecutive splits of 5000 samples
GEN_PROTOCOL = ("sample i: class i mod C, one random generator seeded by (seed, i) for the generator's sampling "
                "then the tokenizer's decode (independent of batch size and process count); images clamped to "
                "[0, 1], uint8 = round(255x), fed at the tokenizer's size; torch-fidelity inception-v3-compat "
                f"2048-d pool features ({INCEPTION_WEIGHTS_FILE}), TF1 bilinear resize to 299; float64 mean + "
                "unbiased covariance; torch-fidelity fid_statistics_to_metric against the reference's mu/sigma")
Progress = Callable[[int, int], None]  # (samples done, samples in all) of this rank


@dataclass(frozen=True)
class GenEvalConfig:
    """Everything a run depends on; the resumable part of it is checked against the checkpoint."""

    generator: str
    tokenizer: str
    reference: str
    out: str
    num_images: int = 50_000
    steps: tuple[int, ...] = (8,)
    guidance: tuple[float, ...] = (4.5,)
    temperature: float = 1.0  # the generator's randomize temperature
    decode_steps: int | None = None  # None: the tokenizer's default
    decode_temperature: float | None = None  # None: the tokenizer's own
    batch_size: int = 32
    seed: int = 0
    inception_weights: str | None = None
    teacher: str | None = None
    precision_recall: bool = True
    refit_reference: bool = True  # also gFID against our Inception's statistics of the reference's own images
    checkpoint_every: int = 20  # batches between partial-statistics checkpoints
    resume: bool = False
    device: str = "cpu"


@dataclass
class GenEvalResult:
    records: list[dict[str, Any]]  # one per steps x guidance; empty on ranks other than 0
    images_this_rank: int = 0


@dataclass
class _Setting:
    steps: int
    guidance: float
    features: FeatureStats = field(default_factory=lambda: FeatureStats(FEATURE_DIM))
    score: InceptionScoreStats = field(default_factory=lambda: InceptionScoreStats(NUM_CLASSES))
    splits: list[InceptionScoreStats] = field(default_factory=list)  # one per ADM split of the sample order
    rows: list[np.ndarray] = field(default_factory=list)  # this rank's pool features, float32, in sample order
    gathered: np.ndarray | None = None  # every rank's features in global sample order (after the run)

    def summed_parts(self) -> dict[str, Accumulator]:
        return {"fid": self.features, "is": self.score, **{f"split{j}": s for j, s in enumerate(self.splits)}}

    def summed(self) -> dict[str, np.ndarray]:
        return joint_state(self.summed_parts())

    def load_summed(self, state: Mapping[str, np.ndarray]) -> None:
        load_joint_state(self.summed_parts(), state)

    def own_features(self) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.zeros((0, FEATURE_DIM), np.float32)


@torch.no_grad()
def generate_samples(generator: MaskGITGenerator, tokenizer: Tokenizer, indices: list[int], steps: int,
                     guidance: float, seed: int, temperature: float = 1.0, decode_steps: int | None = None,
                     decode_temperature: float | None = None) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] of global samples ``indices``: class i mod C, generator seeded by (seed, i)."""
    device = next(generator.parameters()).device
    classes = torch.tensor([i % generator.config.num_classes for i in indices], device=device)
    rngs = [derived_generator(device, seed, i) for i in indices]
    ids, _ = generator.generate(classes, steps, guidance, temperature, rngs)
    return tokenizer.decode(ids, decode_steps, decode_temperature, rngs).float().clamp(0.0, 1.0)


def _resume_settings(config: GenEvalConfig, ranks: Ranks) -> dict[str, Any]:
    keys = ("generator", "tokenizer", "reference", "num_images", "steps", "guidance", "temperature", "decode_steps",
            "decode_temperature", "batch_size", "seed", "teacher", "precision_recall")
    return json.loads(json.dumps({**{k: getattr(config, k) for k in keys}, "world_size": ranks.world}))


def _check_config(config: GenEvalConfig) -> None:
    if config.batch_size < 1 or config.checkpoint_every < 1:
        raise ValueError("batch_size and checkpoint_every: must be >= 1")
    if config.num_images < 2:
        raise ValueError(f"num_images: gFID needs at least 2 images, got {config.num_images}")
    if config.precision_recall and config.num_images <= K_NEIGHBOURS:
        raise ValueError(f"num_images: precision/recall needs more than k = {K_NEIGHBOURS} images, got "
                         f"{config.num_images} (or turn precision/recall off)")
    if not config.steps or any(not 1 <= s <= 32 for s in config.steps):
        raise ValueError(f"steps: generator step counts must lie in 1..32, got {list(config.steps)}")
    if not config.guidance:
        raise ValueError("guidance: give at least one guidance scale")


def _load_models(config: GenEvalConfig, device: torch.device) -> tuple[MaskGITGenerator, Tokenizer]:
    generator = load_pretrained_as(config.generator, MaskGITGenerator, "--generator").to(device).eval()
    teacher = load_pretrained_as(config.teacher, MaskGITVQGAN, "--teacher").eval() if config.teacher else None
    tokenizer = load_tokenizer(config.tokenizer, device, teacher)
    tokenizer.module.eval()
    gen, tok = generator.config, tokenizer.info
    if (gen.codebook_size, gen.num_tokens) != (tok.codebook_size, tok.num_tokens):
        raise ValueError(f"--generator {config.generator}: samples {gen.num_tokens} tokens of a {gen.codebook_size}-code "
                         f"book; --tokenizer {config.tokenizer} reads {tok.num_tokens} tokens of {tok.codebook_size} codes")
    tokenizer.check_steps(config.decode_steps)
    return generator, tokenizer


class _Run:
    """One rank's share of the samples, for every (steps, guidance) setting."""

    def __init__(self, config: GenEvalConfig, ranks: Ranks) -> None:
        self.config, self.ranks = config, ranks
        self.generator, self.tokenizer = _load_models(config, ranks.device)
        self.image_size = self.tokenizer.info.image_size
        self.reference = load_reference(config.reference)
        self.reference.check_compatible(protocol_of(self.image_size), self.image_size)
        self.inception = inception_network(config.inception_weights, ["2048", "logits_unbiased"], ranks.device)
        num_splits = -(-config.num_images // ADM_SPLIT)
        self.settings = [_Setting(s, float(g), splits=[InceptionScoreStats(NUM_CLASSES) for _ in range(num_splits)])
                         for s in dict.fromkeys(config.steps) for g in dict.fromkeys(config.guidance)]
        self.position = 0

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for si, setting in enumerate(self.settings):
            out.update(prefixed(f"s{si}", setting.summed()))
            out[f"s{si}/rows"] = setting.own_features()
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for si, setting in enumerate(self.settings):
            setting.load_summed(unprefixed(f"s{si}", state))
            setting.rows = [np.array(state[f"s{si}/rows"], np.float32)]

    def summed_state(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.state().items() if not k.endswith("/rows")}

    def load_summed_state(self, state: dict[str, np.ndarray]) -> None:
        for si, setting in enumerate(self.settings):
            setting.load_summed(unprefixed(f"s{si}", state))

    def sample(self, indices: list[int], setting: _Setting) -> torch.Tensor:
        c = self.config
        return generate_samples(self.generator, self.tokenizer, indices, setting.steps, setting.guidance, c.seed,
                                c.temperature, c.decode_steps, c.decode_temperature)

    @torch.no_grad()
    def update(self, indices: list[int]) -> None:
        for setting in self.settings:
            features, logits = self.inception(to_uint8(self.sample(indices, setting)).to(self.ranks.device))
            setting.features.update(features)
            setting.score.update_logits(logits)
            split_of = np.array(indices) // ADM_SPLIT
            for j in np.unique(split_of):
                setting.splits[j].update_logits(logits[torch.from_numpy(split_of == j).to(logits.device)])
            if self.config.precision_recall:
                setting.rows.append(features.float().cpu().numpy())

    def records(self, reference_features: np.ndarray | None, features_source: str | None,
                notes: list[str]) -> list[dict[str, Any]]:
        ref = self.reference
        ours = None
        if reference_features is not None and self.config.refit_reference:  # our Inception on the same images
            stats = FeatureStats(FEATURE_DIM)
            stats.update(reference_features)
            ours = ReferenceStats.from_features(stats, protocol_of(self.image_size), self.image_size, features_source)
        num_classes = self.generator.config.num_classes
        out = []
        for setting in self.settings:
            count, mu, sigma = setting.features.count, setting.features.mean, setting.features.covariance
            pr = (precision_recall(reference_features, setting.gathered, device=self.ranks.device)
                  if reference_features is not None and self.config.precision_recall else None)
            out.append({
                "generator": self.config.generator, "tokenizer": self.config.tokenizer,
                "steps": setting.steps, "guidance": setting.guidance, "temperature": self.config.temperature,
                "decode_steps": self.tokenizer.check_steps(self.config.decode_steps),
                "decode_temperature": self.config.decode_temperature, "num_images": count,
                "num_classes": num_classes, "images_per_class": [len(range(c, count, num_classes))
                                                                 for c in range(min(num_classes, count))],
                "gfid": frechet_distance(ref.mu, ref.sigma, mu, sigma), "is": setting.score.score(),
                "is_adm_splits": float(np.mean([s.score() for s in setting.splits])),
                "is_split_size": ADM_SPLIT, "num_is_splits": len(setting.splits),
                "precision": None if pr is None else pr.precision, "recall": None if pr is None else pr.recall,
                "pr_k": K_NEIGHBOURS, "pr_reference_images": None if pr is None else pr.num_real,
                "gfid_our_reference_stats": None if ours is None else frechet_distance(ours.mu, ours.sigma, mu, sigma),
                "protocol": GEN_PROTOCOL, "is_protocol": IS_PROTOCOL, "pr_protocol": PR_PROTOCOL,
                "image_size": self.image_size, "reference": ref.source, "reference_protocol": ref.protocol,
                "reference_num_images": ref.num_images, "reference_features": features_source,
                "seed": self.config.seed, "world_size": self.ranks.world, "batch_size": self.config.batch_size,
                "notes": notes,
            })
        return out


def _notes(config: GenEvalConfig, run: _Run, has_images: bool) -> list[str]:
    notes = []
    classes = run.generator.config.num_classes
    if config.num_images % classes:
        notes.append(f"{config.num_images} images over {classes} classes: classes 0..{config.num_images % classes - 1} "
                     "have one image more than the others")
    if (config.precision_recall or config.refit_reference) and not has_images:
        notes.append(f"reference {config.reference} holds no images (arr_0): precision/recall and "
                     "gfid_our_reference_stats not computed")
    return notes


def run_generator_evaluation(config: GenEvalConfig, progress: Progress | None = None,
                             should_cancel: Callable[[], bool] | None = None) -> GenEvalResult:
    """Sample ``config.num_images`` images and score them; rank 0 writes ``out/results.json`` and returns the
    records. ``progress(done, total)`` after every batch (this rank's samples); ``should_cancel()`` True saves the
    partial statistics and raises :class:`EvaluationCancelled` (``resume=True`` continues)."""
    _check_config(config)
    ranks = join_process_group(config.device)
    settings = _resume_settings(config, ranks)
    ckpt = fresh_or_resumed(config.out, ranks.rank, ranks.world, config.resume)
    run = _Run(config, ranks)
    ref = (reference_features(config.reference, config.inception_weights, ranks, config.out)
           if config.precision_recall or config.refit_reference else None)
    if ckpt.exists():
        state, run.position = load_checkpoint(ckpt, settings)
        run.load_state(state)
    share = rank_share(config.num_images, ranks.rank, ranks.world)
    mine = list(range(ranks.rank, config.num_images, ranks.world))
    since = 0
    for start in range(run.position, share, config.batch_size):
        indices = mine[start:start + config.batch_size]
        run.update(indices)
        run.position += len(indices)
        since += 1
        if since >= config.checkpoint_every:
            save_checkpoint(ckpt, run.state(), run.position, settings)
            since = 0
        if progress is not None:
            progress(run.position, share)
        if should_cancel is not None and should_cancel() and run.position < share:
            save_checkpoint(ckpt, run.state(), run.position, settings)
            raise EvaluationCancelled(f"cancelled after {run.position} samples; resume to continue")
    save_checkpoint(ckpt, run.state(), run.position, settings)  # a kill during the reduce loses nothing
    run.load_summed_state(all_reduce_sum(run.summed_state(), ranks))
    for setting in run.settings:
        setting.gathered = (gather_rank_rows(setting.own_features(), config.num_images, ranks)
                            if config.precision_recall else None)
    records: list[dict[str, Any]] = []
    if ranks.is_main:
        features, source = (None, None) if ref is None else (ref[0], str(ref[1]))
        records = run.records(features, source, _notes(config, run, ref is not None))
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(to_jsonable({"records": records}), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out / "results.json")
    barrier(ranks)
    ckpt.unlink(missing_ok=True)
    return GenEvalResult(records, run.position)
