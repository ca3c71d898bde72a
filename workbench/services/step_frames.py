"""Every step of a decode as browser-ready pictures: PNG data URIs and one line of facts per step.

The step scrubber sends these once per decode and switches between them in the browser, so moving
the slider costs no server call. Grids and heat maps are upscaled with gutters (readable cells, and
they compress to a few kB); previews go at the model's size and the browser scales them pixelated.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from workbench.services.step_pictures import HEAT_KINDS, grid_image, heat_image, heat_values
from workbench.services.traces import StepTrace


@dataclass(frozen=True)
class StepFrames:
    """Per-step pictures (data URIs) and facts of one trace; index = step - 1."""

    num_steps: int
    grid: list[str]
    heat: dict[str, list[str]]  # heat kind -> frames
    heat_range: dict[str, tuple[float, float, str]]  # heat kind -> (low, high, unit) of its colour scale
    preview: list[str]
    info: list[str]  # HTML, one per step
    preview_label: str
    grid_label: str = ""  # what the grid's cells are, when not the screen's own label (one-step tokenizers)
    cell_scores: bool = True  # False: confidence and entropy were not measured (the heat panel is blank, n/a)
    steps_note: str = ""  # beside the step slider: "1 step: one-step decoder"

    def as_json(self) -> dict:
        return {"steps": self.num_steps, "grid": self.grid, "heat": self.heat, "preview": self.preview,
                "info": self.info, "range": {k: list(v) for k, v in self.heat_range.items()}}


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) array as a ``data:image/png;base64,...`` URI (fast compression: small pictures)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def step_facts(trace: StepTrace, step: int) -> str:
    """One step in numbers (HTML): what the grid, heat map and curve show at ``step`` (0-based)."""
    if trace.steps_note:  # a one-step decoder: no masking, no schedule, no sampling temperature
        return " · ".join([f"<b>Step {step + 1} / {trace.total_steps}</b>", html.escape(trace.steps_note),
                           *_one_step_cells(trace, step), *_metric_facts(trace, step)])
    masked_before = int((trace.ids_in[step] == trace.mask_id).sum())
    parts = [f"<b>Step {step + 1} / {trace.total_steps}</b>",
             f"Gumbel temperature {float(trace.temperature[step]):.3f}",
             f"masked {masked_before} → {trace.masked_after(step)} of {trace.ids_out.shape[1]}",
             f"committed now {trace.committed_at(step)}"]
    if "mean confidence" not in trace.metrics:
        parts.append(f"mean confidence {float(trace.confidence[step].mean()):.3f}")
    return " · ".join(parts + _metric_facts(trace, step))


def _metric_facts(trace: StepTrace, step: int) -> list[str]:
    return [f"{html.escape(name)} {float(values[step]):.3f}" for name, values in trace.metrics.items()]


def _one_step_cells(trace: StepTrace, step: int) -> list[str]:
    cells = int(trace.ids_out.shape[1])
    if not cells:
        return ["no grid"]
    if not trace.cell_scores:
        return [f"{cells} cells, all at once", "confidence / entropy n/a"]
    return [f"{cells} cells, all at once", f"mean confidence {float(trace.confidence[step].mean()):.3f}",
            f"mean entropy {float(trace.entropy[step].mean()):.3f} bits"]


def make_frames(trace: StepTrace, reuse: StepFrames | None = None) -> StepFrames:
    """Every step's pictures and facts. ``reuse``: the frames of an earlier, shorter state of the same streaming
    decode; its pictures are kept (a step's pictures never change once decoded) and only new steps are drawn.
    The facts are always redone: the complete trace adds metrics that need every step."""
    kept = reuse.num_steps if reuse is not None and reuse.num_steps <= trace.num_steps else 0
    new = range(kept, trace.num_steps)
    ranges = {}
    for kind in HEAT_KINDS:
        _, lo, hi = heat_values(trace, 0, kind)
        ranges[kind] = (lo, hi, "probability" if kind == "confidence" else "bits")
    old = reuse if kept else StepFrames(0, [], {kind: [] for kind in HEAT_KINDS}, ranges, [], [], "")
    return StepFrames(
        num_steps=trace.num_steps,
        grid=old.grid[:kept] + [png_data_uri(grid_image(trace, s)) for s in new],
        heat={kind: old.heat[kind][:kept] + [png_data_uri(heat_image(trace, s, kind)) for s in new]
              for kind in HEAT_KINDS},
        heat_range=ranges,
        preview=old.preview[:kept] + [png_data_uri(trace.previews[s]) for s in new],
        info=[step_facts(trace, s) for s in range(trace.num_steps)],
        preview_label=trace.preview_label, grid_label=trace.grid_label, cell_scores=trace.cell_scores,
        steps_note=trace.steps_note)
