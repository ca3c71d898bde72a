"""The step scrubber: one decode's steps as grid / heat map / preview / metric curve, with play and GIF.

Shared by Reconstruct and Generate; a one-step tokenizer's decode (TiTok, ReVQ, the teacher) shows as one step,
with the trace's own grid caption and "n/a" where it has no confidence or entropy per cell. A screen that produces a new trace returns ``scrubber.show(key)``
for ``scrubber.outputs``: that sends every step's pictures once (:mod:`workbench.services.step_frames`),
and the slider, play and the heat-map switch run in the browser (:mod:`scrubber_js`) without a server
call. While a decode streams, the screen returns ``show_partial(key, trace)`` after each step: the steps
so far, scrubbable, with the step the user chose kept as new ones arrive. Exporting the GIF reads the
cached (complete) trace on the server.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from workbench.services.decoding import COMMITS_RIGHT, TEACHER_CONTEXT_PSNR, DecodeService, TraceExpired
from workbench.services.lru import LRU
from workbench.services.step_frames import StepFrames, make_frames
from workbench.services.step_pictures import COMMITTED, HEAT_KINDS, MASKED, NEW, VIRIDIS_LUT, write_gif
from workbench.services.traces import StepTrace
from workbench.ui.components.plots import as_plot, step_curve
from workbench.ui.components.scrubber_js import ON_LOAD, heat_switch_js


@dataclass
class ScrubberState:
    """What a browser session's scrubber shows: the cache key of its decode."""

    trace_key: str = ""


def _swatch(color: Any, text: str) -> str:
    r, g, b = (int(c) for c in color)
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});'
            f'border:1px solid #999;vertical-align:middle;margin:0 0.3em 0 0.8em"></span>{text}')


GRID_LEGEND = _swatch(MASKED, "masked") + _swatch(COMMITTED, "committed earlier") + _swatch(NEW, "committed at this step")
VIRIDIS_CSS = "linear-gradient(to right, " + ", ".join(
    f"rgb({r},{g},{b})" for r, g, b in VIRIDIS_LUT[::32].tolist() + [VIRIDIS_LUT[-1].tolist()]) + ")"


def _panel(cls: str, elem_id: str, caption: str, src: str, extra: str = "") -> str:
    return (f"<figure class='scrub-panel' id='{elem_id}'><figcaption>{caption}</figcaption>"
            f"<img class='{cls}' src='{src}' alt='{html.escape(caption)}'>{extra}</figure>")


def scrubber_html(name: str, frames: StepFrames, heat: str, grid_label: str, decode: str = "",
                  total_steps: int = 0) -> str:
    """The scrubber for one decode, showing its last step so far; all frames ride along in ``data-frames``.

    ``decode`` names the decode (its cache key): the browser keeps a step the user chose while the same decode
    streams in. ``total_steps`` above the frames' count: the decode is still streaming, and the bar says so."""
    last = frames.num_steps - 1
    pending = (f"<span class='scrub-pending' id='{name}-pending'> · decoding step {frames.num_steps + 1} of "
               f"{total_steps}…</span>" if total_steps > frames.num_steps else "")
    heat = heat if heat in HEAT_KINDS else "confidence"
    one_step = (f"<span class='scrub-steps-note' id='{name}-steps-note'> · {html.escape(frames.steps_note)}</span>"
                if frames.steps_note else "")
    heat_caption = "Heat map: <span class='scrub-heat-kind'>" + heat + "</span> per cell"
    if not frames.cell_scores:
        heat_caption += " · n/a: no distribution per cell"
    lo, hi, unit = frames.heat_range[heat]
    scale = (f"<div class='scrub-scale'><span class='scrub-scale-lo'>{lo:g}</span>"
             f"<span class='scrub-scale-bar' style='background:{VIRIDIS_CSS}'></span>"
             f"<span class='scrub-scale-hi'>{hi:.2f} {unit}</span></div>")
    data = html.escape(json.dumps(frames.as_json(), separators=(",", ":")), quote=True)
    return (
        f"<div class='scrub' data-scrubber='{name}' data-decode='{html.escape(decode)}' data-step='{last + 1}' "
        f"data-heat='{heat}' data-frames=\"{data}\">"
        f"<div class='scrub-bar'><button class='scrub-play' id='{name}-play' type='button'>▶ Play</button>"
        f"<label id='{name}-step'>Step <b class='scrub-now'>{last + 1}</b> / {frames.num_steps} "
        f"<input class='scrub-range' type='range' min='1' max='{frames.num_steps}' step='1' value='{last + 1}'>"
        f"</label>{one_step}{pending}</div>"
        f"<div class='scrub-panels'>"
        + _panel("scrub-grid", f"{name}-grid", html.escape(frames.grid_label or grid_label), frames.grid[last])
        + _panel("scrub-heat", f"{name}-heat", heat_caption, frames.heat[heat][last], scale)
        + _panel("scrub-preview", f"{name}-preview", "Image at this step", frames.preview[last])
        + f"</div><div class='scrub-legend'>{GRID_LEGEND}</div>"
        f"<div class='scrub-info' id='{name}-info'>{frames.info[last]}</div>"
        f"<small>Preview: {html.escape(frames.preview_label)}.</small></div>")


def curve_note(trace: StepTrace) -> str:
    """Sentences for the per-step PSNR: a fall with more steps, and the image's own thumbnails for scale."""
    psnr = trace.metrics.get("PSNR (dB)")
    if psnr is None or len(psnr) == 0:
        return ""
    return " ".join(filter(None, (_falling_note(psnr), _teacher_note(trace, psnr),
                                  _scale_note(float(psnr[-1]), trace.thumbnail_psnr))))


def _teacher_note(trace: StepTrace, psnr: np.ndarray) -> str:
    """What the decode steps could give this decoder: its last step with the teacher's codes committed instead."""
    forced, right = trace.metrics.get(TEACHER_CONTEXT_PSNR), trace.metrics.get(COMMITS_RIGHT)
    if forced is None or right is None or len(psnr) < 2:
        return ""
    newly = np.array([trace.committed_at(s) for s in range(len(right))], dtype=np.float64)
    share = float((right * newly).sum() / max(newly.sum(), 1.0))
    gain_own, gain_forced = float(psnr[-1] - psnr[0]), float(forced[-1] - forced[0])
    text = (f"{share:.0%} of its committed codes are the teacher's. From step 1 to {len(psnr)} the image moves "
            f"{gain_own:+.2f} dB; with the teacher's codes at the same committed slots it would move {gain_forced:+.2f} dB "
            "(dashed line)")
    if gain_forced < 0.1:
        return text + ": this decoder gets little from revealed codes even when they are right."
    if gain_forced - gain_own >= 0.1:
        return text + ": the steps could sharpen it, and its own wrong commits are what hold them back."
    return text + "."


def _falling_note(psnr: np.ndarray) -> str:
    best = int(psnr.argmax())
    if best == len(psnr) - 1 or float(psnr[best] - psnr[-1]) < 0.05:  # also a single step
        return ""
    return (f"PSNR peaks at step {best + 1} ({float(psnr[best]):.2f} dB) and falls to {float(psnr[-1]):.2f} dB at the "
            "last step. Not a bug: early previews are soft averages over many codes, which score well on PSNR; "
            "later steps commit to single codes with sharper, not always closer, detail.")


def _scale_note(final: float, thumbnails: dict[int, float]) -> str:
    """Where the last step's PSNR sits against the image rebuilt from its own s x s thumbnails (no model)."""
    if not thumbnails:
        return ""
    scale = ", ".join(f"{'its mean colour' if s == 1 else f'a {s}x{s} thumbnail'} {v:.2f} dB"
                      for s, v in sorted(thumbnails.items()))
    text = f"For scale, this image rebuilt without a model from {scale}."
    if 1 in thumbnails and final < thumbnails[1]:
        text += (f" The last step ({final:.2f} dB) is further from the image than its mean colour: the decode "
                 "gets less of it right than one flat colour would.")
    return text


class StepScrubber:
    """Build inside a ``gr.Blocks`` context; ``name`` prefixes element ids and API names."""

    def __init__(self, service: DecodeService, name: str, exports_dir: Path, grid_label: str,
                 empty_text: str = "Decode an image to see its steps.") -> None:
        self.service, self.name, self.exports_dir, self.grid_label = service, name, exports_dir, grid_label
        self.empty_html = f"<div class='scrub-empty'>{html.escape(empty_text)}</div>"
        self._frames: LRU[str, StepFrames] = LRU(32)
        self._streaming: LRU[str, StepFrames] = LRU(8)  # frames of decodes still streaming, extended step by step
        self._curves: LRU[str, dict] = LRU(32)
        self.state = gr.State(ScrubberState())
        with gr.Row(equal_height=True):
            self.heat_kind = gr.Radio(list(HEAT_KINDS), value="confidence", label="Heat map", scale=3,
                                      elem_id=f"{name}-heatkind")
            self.export_button = gr.Button("Export GIF", scale=1, min_width=110, elem_id=f"{name}-export")
        self.view = gr.HTML(self.empty_html, elem_id=f"{name}-scrubber", js_on_load=ON_LOAD)
        with gr.Row():
            with gr.Column(scale=2):
                self.gif = gr.File(label="Animation (GIF)", interactive=False, visible=False, elem_id=f"{name}-gif")
                self.note = gr.Markdown(elem_id=f"{name}-curve-note")
            self.curve = gr.Plot(show_label=False, scale=3, elem_id=f"{name}-curve")

    # -- rendering ----------------------------------------------------------------------------------
    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.state, self.view, self.curve, self.note, self.gif]

    def frames(self, key: str) -> StepFrames:
        """Every step's pictures of a cached decode (encoded once per decode; a streamed decode's pictures reused)."""
        trace = self.service.get(key)
        return self._frames.get_or_make(key, lambda: make_frames(trace, self._streaming.get(key)))

    def show(self, key: str, heat: str = "confidence") -> tuple:
        """Outputs for ``self.outputs`` after a new decode: its last step, and no GIF of an older one."""
        trace = self.service.get(key)
        curve = self._curves.get_or_make(key, lambda: step_curve(trace, "Per-step metrics"))
        view = scrubber_html(self.name, self.frames(key), heat, self.grid_label, key)
        return ScrubberState(key), view, as_plot(curve), curve_note(trace), gr.File(value=None, visible=False)

    def show_partial(self, key: str, trace: StepTrace, heat: str = "confidence") -> tuple:
        """Outputs for ``self.outputs`` while decode ``key`` streams: the steps so far (only the new ones drawn),
        no curve yet (it comes with the last step), and nothing to export until the decode is complete."""
        frames = make_frames(trace, self._streaming.get(key))
        self._streaming.put(key, frames)
        view = scrubber_html(self.name, frames, heat, self.grid_label, key, trace.total_steps)
        return ScrubberState(), view, None, "", gr.File(value=None, visible=False)

    def cleared(self) -> list[tuple[gr.components.Component, Any]]:
        """(component, value) pairs that empty the scrubber: for a screen whose last result no longer stands."""
        return [(self.state, ScrubberState()), (self.view, self.empty_html), (self.curve, None), (self.note, ""),
                (self.gif, gr.File(value=None, visible=False))]

    # -- events -------------------------------------------------------------------------------------
    def _on_export(self, state: ScrubberState, heat: str) -> gr.File:
        try:
            trace = self.service.get(state.trace_key)
        except TraceExpired as err:
            raise gr.Error(str(err), print_exception=False) from None
        path = self.exports_dir / f"{self.name}-{state.trace_key[:12]}-{heat}.gif"
        return gr.File(value=str(write_gif(trace, path, heat)), visible=True)

    def wire(self) -> None:
        self.heat_kind.change(None, [self.heat_kind], None, js=heat_switch_js(self.name), api_visibility="private")
        self.export_button.click(self._on_export, [self.state, self.heat_kind], [self.gif],
                                 api_name=f"{self.name}_export_gif")
