"""Codebook and information analyses for the workbench screens: UI choices in, cached reports out.

The :mod:`analysis` package measures (pure functions on models and tensors); this module turns what
a screen offers (a model choice, a workspace dataset, a bounded number of images) into those calls,
reports progress, runs one analysis at a time (two CPU cores are shared with decoding and training)
and keeps the results server-side, so a browser session only holds a key. Images reach the models'
device through the registry's placement; reports hold CPU arrays. No Gradio here.
"""
from __future__ import annotations

import io
import dataclasses
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image

from analysis import (REVEAL_FRACTIONS, CodebookEmbedding, ImageBatch, LeaveOneOutMI, SelfForcingGap, information_rows,
                      TrajectoryInformation, UsageStats, codebook_umap, collect_tokenizer_usage, decode_trajectory,
                      iter_image_batches, leave_one_out_mi, pick_positions, reveal_curve, self_forcing_gap,
                      sftok_mi_inputs, trajectory_information, with_teacher_logits)
from analysis.usage import MAP_POSITION, codebook_title, map_codebook
from analysis.data import iter_samples, resize_center_crop
from core import MaskGITVQGAN, SFTok
from core.tokenizer import TeacherTokenizer, Tokenizer

from workbench.io.datasets import list_datasets, resolve_dataset
from workbench.io.tokenizer_sources import FAMILY_NAMES
from workbench.services.budget import Budget
from workbench.services.devices import Placement, working_on
from workbench.services.lru import LRU
from workbench.services.model_registry import ModelRegistry, ModelUnavailable
from workbench.io.workspace import PathRefused, Workspace
from workbench.services.step_pictures import NEW, upscale

ProgressFn = Callable[[float, str], None]
SPLITS = ("val", "train")
BATCH_SIZE = 32  # images per encoder pass (ids come from encode_each: the counts do not depend on it)
MAX_USAGE_IMAGES = 20_000
MAX_MI_IMAGES = 64
EXAMPLE_SIDE = 192
T = TypeVar("T")


def _no_progress(fraction: float, text: str) -> None:
    return None


class ResultExpired(ValueError):
    """A session refers to an analysis that was evicted from the cache; it has to be run again."""


class ResultCache(Generic[T]):
    """Bounded LRU of analysis results under random keys."""

    def __init__(self, capacity: int = 8) -> None:
        self._items: LRU[str, T] = LRU(capacity)

    def put(self, value: T) -> str:
        key = uuid.uuid4().hex
        self._items.put(key, value)
        return key

    def get(self, key: str, what: str = "analysis") -> T:
        found = self._items.get(key) if key else None
        if found is None:
            raise ResultExpired(f"this {what} is no longer cached (or was never run): press Run again")
        return found


# -- inputs ----------------------------------------------------------------------------------------
def default_dataset(workspace: Workspace) -> str | None:
    """The dataset a screen starts with: a built default dataset if there is one, else the first found."""
    found = list_datasets(workspace)
    preferred = [d for d in found if d.startswith("datasets/default")]
    return (preferred or found or [None])[0]


def dataset_sources(workspace: Workspace, choice: str | None, split: str) -> tuple[str, ...]:
    """The files or folder holding one split of a workspace dataset (shards, or a folder of images)."""
    if not choice:
        raise PathRefused("dataset: none chosen; build the default dataset on the Train screen or put a folder of "
                          "images in the workspace, then pick it")
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS}, got {split!r}")
    data = resolve_dataset(workspace, choice)
    return data.val_sources if split == "val" else data.train_sources


def teacher_beside(registry: ModelRegistry, tokenizer: Tokenizer) -> tuple[Tokenizer | None, str]:
    """(the teacher as a tokenizer at ``tokenizer``'s image size, '') where the tokenizer predicts the teacher's
    codes and the app has a teacher; else (None, why there are no teacher numbers)."""
    info = tokenizer.info
    name = FAMILY_NAMES.get(info.family, info.family)
    if isinstance(tokenizer, TeacherTokenizer):
        return None, f"the {name} is the teacher: its codebook is the one measured"
    if not tokenizer.predicts_teacher_codes:
        return None, f"{name} does not decode through the teacher's codes"
    teacher, note = optional_teacher(registry)
    return (TeacherTokenizer(teacher, info.image_size) if teacher is not None else None), note


def optional_teacher(registry: ModelRegistry) -> tuple[MaskGITVQGAN | None, str]:
    """(teacher, '') when the app has one, else (None, why not) for the screens to show."""
    try:
        return registry.teacher(), ""
    except ModelUnavailable:
        return None, (f"no teacher at {registry.teacher_dir}" if registry.teacher_dir else "the app runs without a teacher")


def _bounded(value: float | int | None, name: str, low: int, high: int) -> int:
    if value is None or not math.isfinite(float(value)) or not low <= int(value) <= high:
        raise ValueError(f"{name}: must be a whole number in {low}..{high}, got {value!r}")
    return int(value)


def _placed(batches: Iterable[ImageBatch], placement: Placement) -> Iterable[ImageBatch]:
    """Batches whose images are on the models' device."""
    for batch in batches:
        yield dataclasses.replace(batch, images=placement.tensor(batch.images))


def _counted(batches: Iterable[ImageBatch], total: int, progress: ProgressFn, start: float, stop: float,
             text: str) -> Iterable[ImageBatch]:
    """Batches, reporting progress in [start, stop] by images seen out of ``total``, with the time all of them
    would take as the first batch measured it (the batch is timed from its reading to its consumer's return)."""
    seen, began, budget = 0, time.perf_counter(), None
    for batch in batches:
        yield batch
        seen += batch.images.shape[0]
        if budget is None and seen < total and seen == BATCH_SIZE:  # a short first batch: the data ran out
            budget = Budget(seen, time.perf_counter() - began, total)
        estimate = f" ({budget.text()})" if budget else ""
        progress(start + (stop - start) * min(1.0, seen / total), f"{text}: {seen} / {total} images{estimate}")


# -- codebook usage --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodebookBook:
    """One codebook's usage over the images, with the vectors its map is drawn from."""

    name: str  # "tokens" (the tokenizer's own codebook) or "teacher" (the teacher's, beside one that predicts it)
    title: str
    stats: UsageStats
    vectors: np.ndarray  # (K, D) float32: what the map shows (per-position books: position MAP_POSITION's codebook)
    grid_side: int | None  # side of the spatial grid the positions lie on (2-D codes); None for 1-D tokens

    @property
    def map_counts(self) -> np.ndarray:
        """The usage of each row of ``vectors``, in its order."""
        return self.stats.position_counts[MAP_POSITION] if self.stats.per_position else self.stats.counts

    @property
    def map_title(self) -> str:
        if self.stats.per_position:
            return (f"{self.title}: UMAP of position {MAP_POSITION}'s {self.vectors.shape[0]} codewords "
                    f"(code k here is position-code k)")
        return f"{self.title}: UMAP of {self.vectors.shape[0]} codewords"

    def where(self, code: int, position: int) -> str:
        """Where an occurrence of ``code`` lies, in words: a grid cell, a token, and a per-position book's own id."""
        if self.grid_side:
            return f"cell ({position // self.grid_side}, {position % self.grid_side})"
        if self.stats.per_position:
            return f"token {position}, id {code - position * self.stats.codes_per_position}"
        return f"token {position}"


def codebook_book(name: str, title: str, tokenizer: Tokenizer, stats: UsageStats) -> CodebookBook:
    """A book from a tokenizer's codebook (a per-position one mapped at MAP_POSITION) and its usage."""
    vectors = map_codebook(tokenizer)
    grid = tokenizer.info.token_grid
    side = grid[0] if grid and grid[0] == grid[1] else None
    return CodebookBook(name, title, stats, vectors.float().cpu().numpy(), side)


@dataclass(frozen=True)
class CodebookReport:
    model_label: str
    family: str  # the tokenizer's (TokenizerInfo.family)
    dataset: str
    split: str
    sources: tuple[str, ...]
    image_size: int
    books: dict[str, CodebookBook]
    teacher_note: str  # why there are no teacher numbers ('' when present)
    seconds: float

    def book(self, name: str) -> CodebookBook:
        if name not in self.books:
            why = f": {self.teacher_note}" if name == "teacher" and self.teacher_note else ""
            raise ValueError(f"codebook: no {name!r} numbers in this run{why}")
        return self.books[name]

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for book in self.books.values():
            s = book.stats
            rows.append({"codebook": book.title, "size": s.codebook_size, "positions": s.num_positions,
                         "images": s.num_samples, "tokens": s.num_tokens, "used": s.used_codes,
                         "utilisation": s.utilisation, "dead": int(s.dead_codes.size), "entropy_bits": s.entropy_bits,
                         "perplexity": s.perplexity, "normalized_entropy": s.normalized_entropy})
        return rows




@dataclass(frozen=True)
class CodeExample:
    key: str  # the sample's key in the dataset
    position: int
    image: np.ndarray | None  # (H, W, 3) uint8 with the token's cell outlined when it has one; None if unreadable
    caption: str


def read_samples(sources: Sequence[str], keys: Iterable[str], image_size: int) -> dict[str, np.ndarray]:
    """Re-read images by the keys :func:`analysis.data.iter_image_batches` gave them, preprocessed alike.

    Keys are ``relative/path.png`` inside an image folder or ``shard.tar/key`` for shards; each shard is
    scanned at most once. Keys that are not found are left out.
    """
    wanted = set(keys)
    found: dict[str, np.ndarray] = {}

    def keep(key: str, data: bytes | Path) -> None:
        image = Image.open(data if isinstance(data, Path) else io.BytesIO(data))
        found[key] = (resize_center_crop(image, image_size).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    for source in map(Path, sources):
        remaining = wanted - found.keys()
        if not remaining:
            break
        if source.is_dir():
            for key in remaining:
                path = (source / key).resolve()
                if source.resolve() in path.parents and path.is_file():
                    keep(key, path)
        elif any(k.startswith(f"{source.name}/") for k in remaining) or source.name in remaining:
            for key, data in iter_samples(str(source)):
                if key in remaining:
                    keep(key, data)
                    if not wanted - found.keys():
                        break
    return found


def outline_cell(image: np.ndarray, position: int, grid_side: int, target: int = EXAMPLE_SIDE) -> np.ndarray:
    """The image upscaled to about ``target`` px with grid cell ``position`` (row-major) outlined."""
    big = upscale(image, target).copy()
    cell_h, cell_w = big.shape[0] / grid_side, big.shape[1] / grid_side
    row, col = divmod(position, grid_side)
    top, left = int(round(row * cell_h)), int(round(col * cell_w))
    bottom, right = int(round((row + 1) * cell_h)) - 1, int(round((col + 1) * cell_w)) - 1
    width = max(2, big.shape[0] // 96)
    for t in range(width):  # a ring, inset so it stays visible at the border
        big[max(0, top - t), left:right + 1] = NEW
        big[min(big.shape[0] - 1, bottom + t), left:right + 1] = NEW
        big[top:bottom + 1, max(0, left - t)] = NEW
        big[top:bottom + 1, min(big.shape[1] - 1, right + t)] = NEW
    return big


def code_examples(report: CodebookReport, book_name: str, code: int | float | None, limit: int = 12) -> list[CodeExample]:
    """The kept (image, position) references of ``code``, with their images re-read from the dataset."""
    book = report.book(book_name)
    size = book.stats.codebook_size
    if code is None or not 0 <= int(code) < size:
        raise ValueError(f"code: must be in 0..{size - 1} for the {book.title}, got {code!r}")
    refs = list(book.stats.examples.get(int(code), ()))[:limit]
    images = read_samples(report.sources, {k for k, _ in refs}, report.image_size)
    out = []
    for key, pos in refs:
        image = images.get(key)
        if image is not None:
            image = outline_cell(image, pos, book.grid_side) if book.grid_side else upscale(image, EXAMPLE_SIDE)
        out.append(CodeExample(key, pos, image, f"{book.where(int(code), pos)} · {key}"))
    return out


# -- information -----------------------------------------------------------------------------------
def reveal_key(fraction: float) -> str:
    return f"ce_hidden_{round(100 * fraction)}pct_revealed"


@dataclass(frozen=True)
class ModelInformation:
    label: str
    target_source: str
    loo: LeaveOneOutMI
    trajectory: TrajectoryInformation
    gap: SelfForcingGap
    reveal_bits: tuple[float, ...] = ()  # CE of the hidden target codes with REVEAL_FRACTIONS of them revealed

    def summary(self) -> dict[str, Any]:
        rows = self.trajectory.rows
        final_acc = self.gap.rows[-1].committed_accuracy if self.gap.rows else float("nan")
        return {"model": self.label, "targets": self.target_source, "images": self.loo.num_images,
                "slots": int(self.loo.positions.size), "loo_mi_bits": self.loo.mean_bits,
                "ci_low": self.loo.mean_ci[0], "ci_high": self.loo.mean_ci[1],
                "ce_all_masked_bits": float(self.loo.ce_all_bits.mean()),
                "ce_leave_one_out_bits": float(self.loo.ce_loo_bits.mean()),
                "info_gain_bits_per_image": float(sum(r.info_gain_bits_per_image for r in rows)),
                "teacher_gain_bits_per_image": float(sum(r.teacher_gain_bits_per_image for r in rows)),
                "block_tc_bits_per_image": float(sum(r.block_tc_bits for r in rows)),
                "self_forcing_kl_bits": self.gap.mean_kl_bits, "last_step_accuracy": final_acc,
                **{reveal_key(f): v for f, v in zip(REVEAL_FRACTIONS, self.reveal_bits)}}


@dataclass(frozen=True)
class InformationReport:
    models: tuple[ModelInformation, ...]
    dataset: str
    split: str
    num_images: int
    positions: np.ndarray  # slots measured by leave-one-out
    num_slots: int
    num_steps: int
    temperature: float
    seed: int
    teacher_note: str
    seconds: float

    def summary_rows(self) -> list[dict[str, Any]]:
        return [m.summary() for m in self.models]


@torch.no_grad()
def measure_information(label: str, model: SFTok, images: torch.Tensor, teacher: MaskGITVQGAN | None,
                        positions: Sequence[int], num_steps: int, temperature: float, seed: int,
                        max_block_slots: int | None, progress: ProgressFn = _no_progress) -> ModelInformation:
    """Leave-one-out MI, information along the decode trajectory and the self-forcing gap of one model."""
    progress(0.0, f"{label}: encoding {images.shape[0]} images")
    inputs = sftok_mi_inputs(model, images, teacher, num_steps, temperature, seed)
    b = images.shape[0]
    what = f"{label}: leave-one-out MI ({b} images x {len(positions)} slots)"
    progress(0.1, what)
    rows = information_rows(b, inputs.targets.shape[1], len(positions), num_steps, max_block_slots)
    after_loo = sum(rows.values()) - rows["leave_one_out"]  # trajectory, teacher-forced, block TC, reveal
    began = time.perf_counter()

    def on_rows(done: int, total: int) -> None:
        estimate = ""
        if done < total:  # the first chunk's rows (and the all-masked pass) price every row of the measurement
            budget = Budget(b + done, time.perf_counter() - began, sum(rows.values()), "decoder rows")
            slots = max(0, (budget.fit() - after_loo - b) // b)
            estimate = (f"; {budget.text()} (leave-one-out {rows['leave_one_out']}, the trajectory, block TC and "
                        f"reveal curve {after_loo}; {slots} slots at {b} images fit a minute)")
        progress(0.1 + 0.45 * done / total, f"{what}: {done} / {total} rows{estimate}")

    loo = leave_one_out_mi(inputs.decoder, inputs.targets, inputs.z_q, inputs.mask_id, positions, seed=seed,
                           on_rows=on_rows)
    progress(0.55, f"{label}: decode trajectory ({num_steps} steps)")
    trajectory = decode_trajectory(inputs.decoder, inputs.z_q, inputs.targets.shape[1], inputs.mask_id, num_steps,
                                   temperature, seed)
    # the information gain and the self-forcing gap both read the teacher-forced passes: run them once
    trajectory = with_teacher_logits(inputs.decoder, inputs.z_q, inputs.targets, trajectory, inputs.mask_id)
    info = trajectory_information(inputs.decoder, inputs.z_q, inputs.targets, inputs.mask_id, num_steps, temperature,
                                  seed, trajectory, max_block_slots)
    progress(0.9, f"{label}: self-forcing gap")
    gap = self_forcing_gap(inputs.decoder, inputs.z_q, inputs.targets, inputs.mask_id, num_steps, temperature, seed,
                           trajectory)
    reveal = reveal_curve(inputs.decoder, inputs.z_q, inputs.targets, inputs.mask_id, REVEAL_FRACTIONS, seed)
    return ModelInformation(label, inputs.target_source, loo, info, gap, reveal)


# -- the service the screens call ------------------------------------------------------------------
@dataclass
class AnalysisService:
    """Runs the screens' analyses one at a time and keeps their reports (LRU) under session keys."""

    registry: ModelRegistry
    workspace: Workspace
    reservoir: int = 16  # example references kept per code
    codebooks: ResultCache[CodebookReport] = field(default_factory=ResultCache)
    informations: ResultCache[InformationReport] = field(default_factory=ResultCache)
    umap_cache_dir: Path | None = None  # None: analysis' default (shared with ``python -m analysis umap``)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def codebook(self, model_choice: str, dataset: str | None, split: str, max_images: float | int | None,
                 seed: int = 0, progress: ProgressFn = _no_progress) -> tuple[str, CodebookReport]:
        """Usage statistics of any tokenizer's codebook (and, beside one that predicts them, the teacher's codes)
        over up to ``max_images`` images at the tokenizer's image size."""
        limit = _bounded(max_images, "images", 1, MAX_USAGE_IMAGES)
        sources = dataset_sources(self.workspace, dataset, split)
        loaded = self.registry.tokenizer(model_choice)
        tok, info = loaded.tokenizer, loaded.tokenizer.info
        teacher, note = teacher_beside(self.registry, tok)
        progress(0.0, "waiting for other analyses" if self._lock.locked() else "starting")
        task = f"encoding up to {limit} images in batches of {BATCH_SIZE} ({loaded.label}, {self.registry.device})"
        with self._lock, working_on(task, "the image count (a batch holds up to 32 images)"):
            start = time.perf_counter()
            batches = iter_image_batches(list(sources), info.image_size, BATCH_SIZE, limit)
            batches = _placed(_counted(batches, limit, progress, 0.0, 0.95, "encoding"), self.registry.placement)
            own, proxy = collect_tokenizer_usage(tok, teacher, batches, self.reservoir, seed)
        books = {"tokens": codebook_book("tokens", codebook_title(FAMILY_NAMES.get(info.family, info.family), info,
                                                         own.per_position), tok, own)}
        if proxy is not None and teacher is not None:
            books["teacher"] = codebook_book("teacher", "Teacher codebook (proxy codes)", teacher, proxy)
        report = CodebookReport(loaded.label, info.family, str(dataset), split, tuple(sources), info.image_size, books,
                                note, time.perf_counter() - start)
        progress(1.0, "done")
        return self.codebooks.put(report), report

    def codebook_map(self, key: str, book_name: str, progress: ProgressFn = _no_progress) -> CodebookEmbedding:
        """Seeded 2-D UMAP of a run's codebook; cached on disk by the codebook's hash. ``progress`` hears every
        epoch of a fit; one that raises (a cancelled screen) ends the fit there and frees the analyses."""
        book = self.codebooks.get(key, "codebook run").book(book_name)
        progress(0.0, "waiting for other analyses" if self._lock.locked() else "codebook map")
        with self._lock:
            return codebook_umap(book.vectors, seed=0, cache_dir=self.umap_cache_dir, progress=progress)

    def information(self, choices: Sequence[str], dataset: str | None, split: str, num_images: float | int | None,
                    num_slots: float | int | None, num_steps: float | int | None, temperature: float | None,
                    seed: float | int | None, max_block_slots: float | int | None = 4,
                    progress: ProgressFn = _no_progress) -> tuple[str, InformationReport]:
        """MI measurements of one or two models on the same images, targets and measured slots (SFTok only: a
        one-step tokenizer has no steps or masked context to measure, and is refused saying so)."""
        from workbench.services.one_step import refuse_one_step

        choices = [c for c in choices if c]
        refuse_one_step(self.registry, choices)
        if not choices:
            raise ModelUnavailable("model: choose at least one tokenizer")
        n_images = _bounded(num_images, "images", 2, MAX_MI_IMAGES)
        steps = _bounded(num_steps, "steps", 1, 32)
        seed_value = _bounded(seed or 0, "seed", 0, 2**31 - 1)
        cap = _bounded(max_block_slots, "block slots", 1, 4096) if max_block_slots else None
        if temperature is None or not math.isfinite(float(temperature)) or float(temperature) < 0:
            raise ValueError(f"temperature: must be >= 0, got {temperature!r}")
        sources = dataset_sources(self.workspace, dataset, split)
        loaded = [self.registry.get(c) for c in choices]
        labels = [f"{chr(ord('A') + i)}: {m.label}" for i, m in enumerate(loaded)]
        first = loaded[0].model.config
        for label, m in zip(labels[1:], loaded[1:]):
            cfg = m.model.config
            if (cfg.image_size, cfg.num_proxy_codes) != (first.image_size, first.num_proxy_codes):
                raise ValueError(f"model {label}: {cfg.image_size} px / {cfg.num_proxy_codes} proxy slots, but model A "
                                 f"has {first.image_size} px / {first.num_proxy_codes}; compare models of one shape")
        slots = _bounded(num_slots, "slots", 1, first.num_proxy_codes)
        teacher, note = optional_teacher(self.registry)
        progress(0.0, "waiting for other analyses" if self._lock.locked() else "reading images")
        task = (f"measuring {n_images} images x {slots} slots of {len(loaded)} model(s) in {steps} steps "
                f"({self.registry.device})")
        with self._lock, working_on(task, "the number of images or slots"):
            start = time.perf_counter()
            batch = next(iter(iter_image_batches(list(sources), first.image_size, n_images, n_images)), None)
            if batch is None:
                raise ValueError(f"dataset: {dataset} ({split}) holds no images")
            images = self.registry.placement.tensor(batch.images)
            positions = pick_positions(first.num_proxy_codes, slots, seed_value)
            temp = float(temperature)
            results = []
            for i, (label, m) in enumerate(zip(labels, loaded)):
                share = 1.0 / len(loaded)
                sub = lambda f, text, i=i, share=share: progress(0.02 + 0.96 * share * (i + f), text)  # noqa: E731
                results.append(measure_information(label, m.model, images, teacher, positions, steps, temp,
                                                   seed_value, cap, sub))
        report = InformationReport(tuple(results), str(dataset), split, int(batch.images.shape[0]), positions,
                                   first.num_proxy_codes, steps, temp, seed_value, note, time.perf_counter() - start)
        progress(1.0, "done")
        return self.informations.put(report), report


__all__ = ["AnalysisService", "CodeExample", "CodebookBook", "CodebookReport", "InformationReport", "ModelInformation",
           "ResultCache", "ResultExpired", "SPLITS", "code_examples", "dataset_sources",
           "default_dataset", "measure_information", "optional_teacher", "outline_cell", "pick_positions",
           "read_samples", "teacher_beside"]
