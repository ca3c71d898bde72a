"""A decode as plain arrays: what the step scrubber shows for every step, computed once per request.

Both screens with a scrubber produce a :class:`StepTrace`: Reconstruct from ``SFTok.decode_steps``
(proxy-code grid, 16 x 16 on the official model), or for a one-step tokenizer (TiTok, ReVQ, the teacher) a
trace of one step (:mod:`workbench.services.one_step`), and Generate from ``MaskGITGenerator.generate``
(the 8 x 8 latent-token grid). Moving the scrubber only indexes these arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from core import DecodeStep
from core.sampling import StepOutput


@dataclass(frozen=True)
class StepTrace:
    """Per-step arrays for one image; T = steps, S = grid cells (grid_side ** 2; 0 when there is no grid)."""

    grid_side: int
    mask_id: int
    ids_in: np.ndarray  # (T, S) int, mask_id where masked before the step
    ids_out: np.ndarray  # (T, S) int, mask_id where still masked after the step
    newly_committed: np.ndarray  # (T, S) bool
    confidence: np.ndarray  # (T, S) probability of each cell's candidate
    entropy: np.ndarray  # (T, S) predictive entropy, bits
    temperature: np.ndarray  # (T,) Gumbel temperature used at the step
    previews: np.ndarray  # (T, H, W, 3) uint8: the image as it stands after each step
    final: np.ndarray  # (H, W, 3) uint8: the decode's output image
    tokens: np.ndarray  # (N,) int: the latent token ids that were decoded
    preview_label: str  # how previews were rendered (shown in the UI)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T,) per-step values
    # PSNR (dB) of the input rebuilt from its own s x s thumbnail, keyed by s: model-free scale for the PSNR curve
    thumbnail_psnr: dict[int, float] = field(default_factory=dict)
    precision: str = "fp32"  # what the decode really ran in
    fp32_agreement: float | None = None  # bf16 decodes: share of final ids equal to the fp32 decode's (same seed)
    precision_note: str = ""  # why the requested precision was not used ('' when it was)
    planned_steps: int = 0  # steps the decode will have; more than num_steps while it streams (0: num_steps)
    # one-step tokenizers: what the grid's cells are ('' = the screen's own label), whether confidence / entropy
    # were measured (False: the tokenizer gives no distribution per cell), what the step slider says, and which
    # requested settings did not apply (said per request, not cached)
    grid_label: str = ""
    cell_scores: bool = True
    steps_note: str = ""
    settings_note: str = ""

    @property
    def num_steps(self) -> int:
        """Steps decoded so far (all of them once the decode is complete)."""
        return int(self.ids_out.shape[0])

    @property
    def total_steps(self) -> int:
        return max(self.planned_steps, self.num_steps)

    @property
    def complete(self) -> bool:
        return self.num_steps >= self.planned_steps

    def masked_after(self, step: int) -> int:
        return int((self.ids_out[step] == self.mask_id).sum())

    def committed_at(self, step: int) -> int:
        return int(self.newly_committed[step].sum())


def _stack(tensors: Sequence[torch.Tensor], dtype: np.dtype) -> np.ndarray:
    return torch.stack([t[0].detach().cpu() for t in tensors]).numpy().astype(dtype, copy=False)


def grid_side_of(num_cells: int) -> int:
    """The side of a square grid of ``num_cells`` cells; a count that is not a square is refused."""
    side = math.isqrt(num_cells)
    if side * side != num_cells:
        raise ValueError(f"grid: {num_cells} cells do not form a square grid")
    return side


def trace_from_decode_steps(records: Sequence[DecodeStep], mask_id: int, previews: np.ndarray, final: np.ndarray,
                            tokens: np.ndarray, preview_label: str,
                            metrics: dict[str, np.ndarray] | None = None,
                            thumbnail_psnr: dict[int, float] | None = None, planned_steps: int = 0) -> StepTrace:
    """First batch element of ``SFTok.decode_steps`` records (all, or the first ones of a streaming decode)
    as a :class:`StepTrace`."""
    return StepTrace(
        grid_side=grid_side_of(records[0].ids_out.shape[1]), mask_id=mask_id,
        ids_in=_stack([r.ids_in for r in records], np.int64), ids_out=_stack([r.ids_out for r in records], np.int64),
        newly_committed=_stack([r.newly_committed for r in records], np.bool_),
        confidence=_stack([r.confidence for r in records], np.float32),
        entropy=_stack([r.entropy for r in records], np.float32),
        temperature=np.array([r.temperature for r in records], dtype=np.float32),
        previews=previews, final=final, tokens=tokens, preview_label=preview_label, metrics=dict(metrics or {}),
        thumbnail_psnr=dict(thumbnail_psnr or {}), planned_steps=planned_steps)


def trace_from_generator_steps(steps: Sequence[StepOutput], mask_id: int, previews: np.ndarray, final: np.ndarray,
                               tokens: np.ndarray, preview_label: str,
                               metrics: dict[str, np.ndarray] | None = None, planned_steps: int = 0) -> StepTrace:
    """First batch element of ``MaskGITGenerator.generate`` step outputs as a :class:`StepTrace`."""
    ids_out = _stack([s.ids_out for s in steps], np.int64)
    ids_in = np.concatenate([np.full_like(ids_out[:1], mask_id), ids_out[:-1]])
    return StepTrace(
        grid_side=grid_side_of(ids_out.shape[1]), mask_id=mask_id, ids_in=ids_in, ids_out=ids_out,
        newly_committed=_stack([s.newly_committed for s in steps], np.bool_),
        confidence=_stack([s.confidence for s in steps], np.float32),
        entropy=_stack([s.entropy for s in steps], np.float32),
        temperature=np.array([s.temperature for s in steps], dtype=np.float32),
        previews=previews, final=final, tokens=tokens, preview_label=preview_label, metrics=dict(metrics or {}),
        planned_steps=planned_steps)
