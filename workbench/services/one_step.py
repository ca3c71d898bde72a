"""Reconstruct for tokenizers that decode all their ids in one pass: TiTok, ReVQ and the MaskGIT-VQGAN teacher.

The step scrubber shows a :class:`StepTrace`; a one-step decoder's has one step with every cell committed at it.
What its grid can honestly show depends on what the ``core.tokenizer`` interface gives:

- TiTok predicts the teacher's proxy codes (``proxy_logits``): the grid is their argmax, with the softmax
  confidence and entropy of each cell;
- the teacher's ids are its own codes on its 2-D grid, chosen by nearest codeword: no distribution, so
  confidence and entropy are n/a;
- ReVQ (or another 1-D tokenizer without proxy codes) has no teacher codes: its ids laid out in order when
  their count is a square (not image positions), else no grid at all.

SFTok's masked-decoding settings (steps, temperature, seed, bf16) do not apply to these; they are ignored and
the status line says so. SFTok is the only multi-step decoder: the Information screen measures it alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from core.tokenizer import Tokenizer, TokenizerInfo

from workbench.io.tokenizer_sources import FAMILY_NAMES, RELEASE_FILE_FAMILIES, folder_family
from workbench.io.workspace import PathRefused
from workbench.services.model_registry import (COMPARISON_CHOICE, DEFAULT_CHOICE, TEACHER_CHOICE, TITOK_CHOICE,
                                               ModelRegistry, ModelUnavailable)
from workbench.services.traces import StepTrace

ONE_STEP = "1 step: one-step decoder"
INFORMATION_SFTOK_ONLY = ("Information measures SFTok's multi-step masked decoder (leave-one-out MI over its proxy "
                          "slots, the decode trajectory); one-step tokenizers (TiTok, ReVQ, the MaskGIT-VQGAN teacher) "
                          "have no steps or masked context to measure: the A/B and Codebook screens take them")


def family_name(info: TokenizerInfo) -> str:
    return FAMILY_NAMES.get(info.family, info.family)


def _square_side(count: int) -> int:
    """The side of a square of ``count`` cells, 0 when ``count`` is not a square."""
    side = math.isqrt(count)
    return side if side * side == count and count > 0 else 0


@dataclass(frozen=True)
class OneStepCells:
    """What a one-step decode's grid shows, one value per cell (S = 0: no grid)."""

    ids: np.ndarray  # (S,) int64
    confidence: np.ndarray  # (S,) float32, probability of the cell's code
    entropy: np.ndarray  # (S,) float32, bits
    vocab: int  # codes a cell can hold: the trace's mask id and the entropy scale
    label: str  # what the cells are, for the grid's caption
    scored: bool  # a predicted distribution per cell (TiTok): confidence and entropy measured, not n/a


@torch.no_grad()
def one_step_cells(tokenizer: Tokenizer, ids: torch.Tensor) -> OneStepCells:
    """The grid of one image's ids (1, N): TiTok's argmax proxy codes with softmax confidence and entropy, the
    teacher's own codes, or the token ids themselves when N is a square (confidence 1, entropy 0: n/a)."""
    info, name = tokenizer.info, family_name(tokenizer.info)
    logits = tokenizer.proxy_logits(ids)
    if logits is not None:
        probs = torch.softmax(logits[0].float().cpu(), dim=-1)  # (S, V)
        confidence, codes = probs.max(dim=-1)
        entropy = torch.special.entr(probs).sum(dim=-1) / math.log(2.0)
        cells, vocab = int(codes.shape[0]), int(probs.shape[-1])
        if _square_side(cells):
            return OneStepCells(codes.numpy().astype(np.int64), confidence.numpy().astype(np.float32),
                                entropy.numpy().astype(np.float32), vocab,
                                f"{name}'s proxy codes: the argmax of its one pass over the teacher's {vocab} codes",
                                True)
    row = ids[0].detach().cpu().long().numpy()
    n, vocab = int(row.shape[0]), info.codebook_size
    grid = info.token_grid
    if grid is not None and grid[0] == grid[1] and grid[0] * grid[1] == n:
        label = f"{name}'s own codes ({grid[0]} x {grid[1]}), chosen by nearest codeword: confidence and entropy n/a"
    elif grid is None and _square_side(n):
        side = _square_side(n)
        label = (f"{name}'s {n} token ids laid out {side} x {side} in order (not image positions); no teacher codes, "
                 "confidence and entropy n/a")
    else:
        shape = f"{grid[0]} x {grid[1]} codes" if grid is not None else f"{n} tokens"
        return OneStepCells(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), vocab,
                            f"no grid: {name}'s {shape} do not form a square; its ids are under Token surgery", False)
    return OneStepCells(row, np.ones(n, np.float32), np.zeros(n, np.float32), vocab, label, False)


def trace_from_one_step(cells: OneStepCells, picture: np.ndarray, tokens: np.ndarray, preview_label: str,
                        metrics: dict[str, np.ndarray] | None = None,
                        thumbnail_psnr: dict[int, float] | None = None) -> StepTrace:
    """A one-step decode as a :class:`StepTrace`: every cell masked before step 1 and committed at it; the preview
    and the final image are ``picture`` (H, W, 3) uint8, the tokenizer's reconstruction."""
    ids_out = cells.ids[None]
    return StepTrace(
        grid_side=_square_side(cells.ids.shape[0]), mask_id=cells.vocab, ids_in=np.full_like(ids_out, cells.vocab),
        ids_out=ids_out, newly_committed=np.ones(ids_out.shape, np.bool_), confidence=cells.confidence[None],
        entropy=cells.entropy[None], temperature=np.zeros(1, np.float32), previews=picture[None], final=picture,
        tokens=tokens, preview_label=preview_label, metrics=dict(metrics or {}),
        thumbnail_psnr=dict(thumbnail_psnr or {}), planned_steps=1, grid_label=cells.label,
        cell_scores=cells.scored, steps_note=ONE_STEP)


def ignored_settings(info: TokenizerInfo, num_steps: int, precision: str) -> tuple[str, str]:
    """(settings note, precision note) for a one-step decode: what of SFTok's settings was ignored, said on screen."""
    name = family_name(info)
    settings = (f"{name} decodes all its ids in one pass: the step count ({num_steps} asked), temperature and seed "
                "apply to SFTok's masked decoding only and were ignored")
    exact = "" if precision == "fp32" else f"{precision} is SFTok's decoding mode: {name} decoded in fp32"
    return settings, exact


def choice_family(registry: ModelRegistry, choice: str) -> str | None:
    """The family of a tokenizer choice from its files alone (no weights read); None when that cannot be told
    here (a hub id, a path that is not there): loading it then gives the reason."""
    text = (choice or "").strip()
    if text == TEACHER_CHOICE:
        return "maskgit_vqgan"
    if text == TITOK_CHOICE:
        return "titok"
    if text in ("", DEFAULT_CHOICE, COMPARISON_CHOICE):
        return "sftok"
    try:
        path = registry.workspace.resolve(text)
    except PathRefused:
        return None
    return folder_family(path) or (RELEASE_FILE_FAMILIES.get(path.name) if path.is_file() else None)


def refuse_one_step(registry: ModelRegistry, choices: Iterable[str]) -> None:
    """Information's models must be SFTok's multi-step decoder: any other family is refused, saying why."""
    for choice in choices:
        family = choice_family(registry, choice)
        if family not in (None, "sftok"):
            raise ModelUnavailable(f"{choice}: a {FAMILY_NAMES.get(family, family)} tokenizer. "
                                   f"{INFORMATION_SFTOK_ONLY}.")


__all__ = ["INFORMATION_SFTOK_ONLY", "ONE_STEP", "OneStepCells", "choice_family", "family_name", "ignored_settings",
           "one_step_cells", "refuse_one_step", "trace_from_one_step"]
