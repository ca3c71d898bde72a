"""Pictures of a decode step: the code grid, heat maps, and the animated GIF of all steps.

Pure numpy -> uint8 arrays (no plotting library), so one scrubber move costs well under a
millisecond of rendering. Grids are upscaled with whole-pixel cells and 1-pixel gutters so the
cell structure stays readable in the browser.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.services.traces import StepTrace

MASKED = np.array([216, 216, 222], dtype=np.uint8)
COMMITTED = np.array([70, 110, 170], dtype=np.uint8)
NEW = np.array([245, 150, 40], dtype=np.uint8)
GUTTER = np.array([255, 255, 255], dtype=np.uint8)
NOT_MEASURED = np.array([240, 240, 242], dtype=np.uint8)  # a panel with nothing to show (its caption says why)
HEAT_KINDS = ("confidence", "entropy")
# Viridis sampled at 9 points (matplotlib's values); interpolated into a 256-entry table below.
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)
VIRIDIS_LUT = np.stack([np.interp(np.linspace(0, 8, 256), np.arange(9), _VIRIDIS[:, c]) for c in range(3)], 1).round().astype(np.uint8)


def _cells_to_image(colors: np.ndarray, cell: int) -> np.ndarray:
    """(G, G, 3) cell colours -> (G*cell, G*cell, 3) with a 1-pixel white gutter around each cell."""
    big = np.repeat(np.repeat(colors, cell, axis=0), cell, axis=1)
    if cell >= 4:
        big[cell - 1::cell, :, :] = GUTTER
        big[:, cell - 1::cell, :] = GUTTER
    return big


def cell_size(grid_side: int, target: int = 256) -> int:
    return max(1, target // grid_side)


def blank_panel(target: int = 256) -> np.ndarray:
    """An empty panel, for a trace without a grid or without a distribution per cell."""
    return np.broadcast_to(NOT_MEASURED, (target, target, 3)).copy()


def grid_image(trace: StepTrace, step: int, target: int = 256) -> np.ndarray:
    """The code grid after ``step``: masked (grey), committed earlier (blue), newly committed (orange); blank when
    the trace has no grid."""
    g = trace.grid_side
    if not g:
        return blank_panel(target)
    masked = (trace.ids_out[step] == trace.mask_id).reshape(g, g)
    new = trace.newly_committed[step].reshape(g, g)
    colors = np.where(masked[..., None], MASKED, COMMITTED)
    colors = np.where(new[..., None], NEW, colors).astype(np.uint8)
    return _cells_to_image(colors, cell_size(g, target))


def heat_values(trace: StepTrace, step: int, kind: str) -> tuple[np.ndarray, float, float]:
    """(values, lo, hi) of one heat map; entropy is scaled by its maximum log2(vocabulary)."""
    if kind == "confidence":
        return trace.confidence[step], 0.0, 1.0
    if kind == "entropy":
        vocab = max(2, trace.mask_id)  # the mask id equals the vocabulary size in both grids
        return trace.entropy[step], 0.0, float(np.log2(vocab))
    raise ValueError(f"heat map: unknown kind {kind!r}; allowed: {HEAT_KINDS}")


def heat_image(trace: StepTrace, step: int, kind: str = "confidence", target: int = 256) -> np.ndarray:
    """Viridis heat map of per-cell confidence (probability) or entropy (bits) at ``step``; blank where they were
    not measured (no grid, or no distribution per cell)."""
    values, lo, hi = heat_values(trace, step, kind)
    g = trace.grid_side
    if not g or not trace.cell_scores:
        return blank_panel(target)
    idx = np.clip((values - lo) / (hi - lo) * 255.0, 0, 255).astype(np.int64).reshape(g, g)
    return _cells_to_image(VIRIDIS_LUT[idx], cell_size(g, target))


def upscale(image: np.ndarray, target: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor so small model images are not blurred."""
    factor = max(1, target // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    out = np.full((size, size, 3), 255, dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = image
    return out


def step_frame(trace: StepTrace, step: int, heat: str = "confidence", target: int = 192) -> np.ndarray:
    """One animation frame: [grid | heat map | preview] side by side, 8-px white gaps."""
    panels = [grid_image(trace, step, target), heat_image(trace, step, heat, target), upscale(trace.previews[step], target)]
    side = max(max(p.shape[:2]) for p in panels)
    gap = np.full((side, 8, 3), 255, dtype=np.uint8)
    parts = []
    for i, p in enumerate(panels):
        parts += ([gap] if i else []) + [_pad_to(p, side)]
    return np.concatenate(parts, axis=1)


def steps_gif(trace: StepTrace, heat: str = "confidence", frame_ms: int = 500, hold_ms: int = 1500) -> bytes:
    """All steps as an animated GIF (the last frame is held longer), looping forever."""
    frames = [Image.fromarray(step_frame(trace, s, heat)) for s in range(trace.num_steps)]
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    return buf.getvalue()


def write_gif(trace: StepTrace, path: Path, heat: str = "confidence") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(steps_gif(trace, heat))
    return path
