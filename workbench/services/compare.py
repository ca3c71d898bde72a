"""Two tokenizers on one image, step against step: what the A/B screen shows, without Gradio.

Both sides go through the ``core.tokenizer`` interface with the same step count, temperature and seed. A
tokenizer that finishes in fewer steps (TiTok, ReVQ and the teacher decode in one) holds its last frame at
every later step, so one slider position means the same step on both sides. Per-step PSNR follows the
Reconstruct curve's protocol (luma, ``analysis.image_metrics.psnr``); a frame equal to its input is inf dB,
not the metric's 100 dB floor. The token budget is what an image costs to store: tokens x log2(codebook) bits.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.image_metrics import psnr
from core.tokenizer import StepView, Tokenizer, TokenizerInfo

from workbench.io.images import image_digest, image_to_tensor, prepare_image, tensor_to_uint8
from workbench.services.decoding import DecodeSettings, SettingsError
from workbench.services.devices import Placement, working_on
from workbench.services.lru import LRU
from workbench.services.model_registry import ModelRegistry


@dataclass(frozen=True)
class TokenBudget:
    """Bits one image costs as token ids: ``tokens`` ids, each one of ``codebook_size`` codes."""

    tokens: int
    codebook_size: int

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    @property
    def bits(self) -> float:
        return self.tokens * self.bits_per_token

    def describe(self) -> str:
        """``64 tokens x 13 bits = 832 bits`` (fractional bits to one decimal for codebooks not a power of 2)."""
        return f"{self.tokens} tokens × {_bits(self.bits_per_token)} bits = {_bits(self.bits)} bits"


def _bits(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def token_budget(info: TokenizerInfo) -> TokenBudget:
    return TokenBudget(info.num_tokens, info.codebook_size)


def held_indices(own_steps: int, steps: int) -> list[int]:
    """Which of a tokenizer's ``own_steps`` frames shows at each of the comparison's ``steps``: its own step while
    it has one, then its last frame, held (a one-step tokenizer shows its only frame throughout)."""
    if own_steps < 1 or steps < 1:
        raise ValueError(f"steps: need at least one frame and one step, got {own_steps} and {steps}")
    return [min(s, own_steps - 1) for s in range(steps)]


def step_psnr(frames: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """PSNR (dB, luma) of each frame (S, 3, H, W) against ``reference`` (1, 3, H, W), both in [0, 1]; inf where
    a frame equals the reference exactly (the metric itself floors at 100 dB so that means stay finite)."""
    frames, reference = frames.float().cpu(), reference.float().cpu()
    values = psnr(frames, reference.expand_as(frames)).double().numpy()
    identical = (frames == reference).flatten(1).all(dim=1).numpy()
    return np.where(identical, np.inf, values)


@dataclass
class Side:
    """One tokenizer's decode of the image, laid out on the comparison's steps."""

    label: str
    info: TokenizerInfo
    input_image: np.ndarray  # (H, W, 3) uint8: the crop this tokenizer saw
    frames: np.ndarray  # (own_steps, H, W, 3) uint8: one picture per step it decoded
    index: list[int]  # frame shown at each of the comparison's steps (held_indices)
    psnr: np.ndarray  # (steps,) dB at each of the comparison's steps; inf where the frame equals the input
    source: str = ""  # what the upload was and what preprocessing did
    notes: list[str] = field(default_factory=list)

    @property
    def own_steps(self) -> int:
        return len(self.frames)

    @property
    def budget(self) -> TokenBudget:
        return token_budget(self.info)

    def frame_at(self, step: int) -> np.ndarray:
        """The picture at 0-based comparison step ``step``."""
        return self.frames[self.index[step]]

    def held_at(self, step: int) -> bool:
        """Whether ``step`` (0-based) shows a frame held from an earlier step."""
        return step >= self.own_steps


@dataclass
class Comparison:
    steps: int
    a: Side
    b: Side

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b


@torch.no_grad()
def decode_side(tokenizer: Tokenizer, label: str, image: Image.Image, settings: DecodeSettings,
                placement: Placement | None = None) -> Side:
    """Encode ``image`` (already at ``tokenizer.info.image_size``), decode it in ``settings.num_steps`` steps or as
    many as the tokenizer has, and lay the frames out on ``settings.num_steps`` steps."""
    placement = placement or Placement("cpu")
    own = min(settings.num_steps, tokenizer.info.max_steps)
    picture = image_to_tensor(image)
    ids = tokenizer.encode(placement.tensor(picture))
    views: list[StepView] = tokenizer.decode_trace(ids, own, settings.temperature, settings.generator(placement))
    frames = torch.cat([v.preview[:1].float().cpu() for v in views])
    index = held_indices(len(views), settings.num_steps)
    values = step_psnr(frames, picture)
    return Side(label, tokenizer.info, np.asarray(image), tensor_to_uint8(frames), index, values[index])


class CompareService:
    """A/B decodes with a small cache (a rerun with the same settings is free) and one decode at a time."""

    def __init__(self, registry: ModelRegistry, capacity: int = 8) -> None:
        self.registry = registry
        self._cache: LRU[tuple, Comparison] = LRU(capacity)
        self._lock = threading.Lock()
        self.decodes = 0  # real A/B decodes run (cache misses); tests read it

    def compare(self, choice_a: str, choice_b: str, source: str | Path, settings: DecodeSettings,
                name: str | None = None) -> Comparison:
        """Decode ``source`` (validated, centre-cropped to each tokenizer's size) with both tokenizers."""
        if not source:
            raise SettingsError("no image yet: upload one or pick a sample")
        loaded = [self.registry.tokenizer(choice) for choice in (choice_a, choice_b)]
        images = [prepare_image(source, item.tokenizer.info.image_size, name) for item in loaded]
        key = (loaded[0].key, loaded[1].key, image_digest(images[0].image), image_digest(images[1].image), settings)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            sides = []
            for tag, item, image in zip("AB", loaded, images):
                task = (f"decoding 1 image in {settings.num_steps} steps with tokenizer {tag} "
                        f"({item.label}, {self.registry.device})")
                with working_on(task, "the number of decoding steps, or choose a smaller tokenizer"):
                    side = decode_side(item.tokenizer, f"{tag}: {item.label}", image.image, settings,
                                       self.registry.placement)
                side.source, side.notes = image.describe(), image.notes
                sides.append(side)
            result = Comparison(settings.num_steps, *sides)
            self.decodes += 1
            self._cache.put(key, result)
            return result


__all__ = ["Comparison", "CompareService", "Side", "TokenBudget", "decode_side", "held_indices", "step_psnr",
           "token_budget"]
