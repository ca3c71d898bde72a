"""The step scrubber: one decode's steps as grid / heat map / preview / metric curve, with play and GIF.

Shared by Reconstruct and Generate. A screen that produces a new trace returns
``scrubber.show(key)`` for ``scrubber.outputs``; moving the slider, switching the heat map,
playing and exporting are wired here and only read the cached trace.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from workbench.services.decoding import DecodeService, TraceExpired
from workbench.services.step_pictures import HEAT_KINDS, MASKED, COMMITTED, NEW, grid_image, heat_image, upscale, write_gif
from workbench.services.traces import StepTrace
from workbench.ui.components.plots import mark_step, step_curve

PLAY_FRAME_SECONDS = 0.45


@dataclass
class ScrubberState:
    """What a browser session's scrubber shows: the cache key of its decode."""

    trace_key: str = ""


def _swatch(color: Any, text: str) -> str:
    r, g, b = (int(c) for c in color)
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});'
            f'border:1px solid #999;vertical-align:middle;margin:0 0.3em 0 0.8em"></span>{text}')


GRID_LEGEND = _swatch(MASKED, "masked") + _swatch(COMMITTED, "committed earlier") + _swatch(NEW, "committed at this step")


def step_summary(trace: StepTrace, step: int) -> str:
    """Markdown facts about one step (what the grid and curve show, in numbers)."""
    masked_before = int((trace.ids_in[step] == trace.mask_id).sum())
    parts = [f"**Step {step + 1} / {trace.num_steps}**",
             f"Gumbel temperature {float(trace.temperature[step]):.3f}",
             f"masked {masked_before} → {trace.masked_after(step)} of {trace.ids_out.shape[1]}",
             f"committed now {trace.committed_at(step)}",
             f"mean confidence {float(trace.confidence[step].mean()):.3f}"]
    parts += [f"{name} {float(values[step]):.3f}" for name, values in trace.metrics.items()]
    return " · ".join(parts) + f"\n\n<small>Preview: {trace.preview_label}.</small>"


class StepScrubber:
    """Build inside a ``gr.Blocks`` context; ``name`` prefixes the API names of its events."""

    def __init__(self, service: DecodeService, name: str, exports_dir: Path, grid_label: str) -> None:
        self.service, self.name, self.exports_dir = service, name, exports_dir
        self._curves: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.state = gr.State(ScrubberState())
        with gr.Row(equal_height=True):
            self.slider = gr.Slider(1, 8, value=8, step=1, label="Step", scale=5, interactive=True,
                                    elem_id=f"{name}-step")
            self.play_button = gr.Button("▶ Play", scale=1, min_width=90, elem_id=f"{name}-play")
            self.export_button = gr.Button("Export GIF", scale=1, min_width=110, elem_id=f"{name}-export")
            self.heat_kind = gr.Radio(list(HEAT_KINDS), value="confidence", label="Heat map", scale=2)
        with gr.Row():
            self.grid = gr.Image(label=grid_label, interactive=False, format="png", height=270,
                                 elem_id=f"{name}-grid", buttons=["download"])
            self.heat = gr.Image(label="Confidence / entropy per cell", interactive=False, format="png",
                                 height=270, elem_id=f"{name}-heat", buttons=["download"])
            self.preview = gr.Image(label="Image at this step", interactive=False, format="png", height=270,
                                    elem_id=f"{name}-preview", buttons=["download"])
        gr.HTML(f"<div style='font-size:0.9em'>{GRID_LEGEND} &nbsp;·&nbsp; heat map: viridis, dark = low</div>")
        with gr.Row():
            with gr.Column(scale=2):
                self.info = gr.Markdown("Decode an image to see its steps.", elem_id=f"{name}-info")
                self.gif = gr.File(label="Animation (GIF)", interactive=False, visible=False)
            self.curve = gr.Plot(label="Per-step metrics", scale=3, elem_id=f"{name}-curve")

    # -- rendering ----------------------------------------------------------------------------------
    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.state, self.slider, self.grid, self.heat, self.preview, self.curve, self.info]

    def _curve(self, key: str, trace: StepTrace) -> dict:
        with self._lock:
            if key not in self._curves:
                self._curves[key] = step_curve(trace)
                while len(self._curves) > 32:
                    self._curves.popitem(last=False)
            return self._curves[key]

    def visuals(self, key: str, step_value: float | None, heat: str) -> tuple:
        """(grid, heat, preview, curve, info) for a 1-based step; None = last step."""
        trace = self.service.get(key)
        step = trace.num_steps - 1 if step_value is None else min(max(int(step_value), 1), trace.num_steps) - 1
        return (grid_image(trace, step), heat_image(trace, step, heat or "confidence"),
                upscale(trace.previews[step]), mark_step(self._curve(key, trace), step), step_summary(trace, step))

    def show(self, key: str, heat: str = "confidence") -> tuple:
        """Outputs for ``self.outputs`` after a new decode: the last step selected."""
        trace = self.service.get(key)
        slider = gr.Slider(minimum=1, maximum=trace.num_steps, value=trace.num_steps, step=1)
        return (ScrubberState(key), slider, *self.visuals(key, None, heat))

    # -- events -------------------------------------------------------------------------------------
    def _on_step(self, state: ScrubberState, step: float, heat: str) -> tuple:
        try:
            return self.visuals(state.trace_key, step, heat)
        except TraceExpired as err:
            raise gr.Error(str(err)) from err

    def _on_play(self, state: ScrubberState, heat: str) -> Iterator[tuple]:
        try:
            trace = self.service.get(state.trace_key)
        except TraceExpired as err:
            raise gr.Error(str(err)) from err
        for value in range(1, trace.num_steps + 1):
            yield (value, *self.visuals(state.trace_key, value, heat))
            if value < trace.num_steps:
                time.sleep(PLAY_FRAME_SECONDS)

    def _on_export(self, state: ScrubberState, heat: str) -> gr.File:
        try:
            trace = self.service.get(state.trace_key)
        except TraceExpired as err:
            raise gr.Error(str(err)) from err
        path = self.exports_dir / f"{self.name}-{state.trace_key[:12]}-{heat}.gif"
        return gr.File(value=str(write_gif(trace, path, heat)), visible=True)

    def wire(self) -> None:
        visual_outputs = [self.grid, self.heat, self.preview, self.curve, self.info]
        inputs = [self.state, self.slider, self.heat_kind]
        self.slider.input(self._on_step, inputs, visual_outputs, api_name=f"{self.name}_step",
                          show_progress="hidden", trigger_mode="always_last", queue=False)
        self.heat_kind.change(self._on_step, inputs, visual_outputs, api_name=f"{self.name}_heat",
                              show_progress="hidden", queue=False)
        self.play_button.click(self._on_play, [self.state, self.heat_kind], [self.slider, *visual_outputs],
                               api_name=f"{self.name}_play", show_progress="hidden")
        self.export_button.click(self._on_export, [self.state, self.heat_kind], [self.gif],
                                 api_name=f"{self.name}_export_gif")
