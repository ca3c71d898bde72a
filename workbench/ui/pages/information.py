"""Information screen: the paper's argument measured on one or two checkpoints side by side.

Per model, on the same images, targets and slots: leave-one-out I(m_i; m_rest | Z_q) per proxy slot
with bootstrap intervals, the information the revealed codes give along the real decode trajectory,
and the self-forcing gap (a stage-2 model should show a smaller one than its stage-1 parent).
The cost is bounded by the image and slot counts: the defaults run in seconds on the tiny preset.
The pickers list SFTok checkpoints only: the measures need its masked multi-step decoder (their info text says why;
a one-step tokenizer sent through the API is refused with the same reason).
"""
from __future__ import annotations

import html
from typing import Iterator

import gradio as gr
import pandas as pd

from analysis import REVEAL_FRACTIONS
from analysis.code_information import ScreenDefaults

from workbench.services.analyses import MAX_MI_IMAGES, AnalysisService, InformationReport, reveal_key
from workbench.services.model_registry import COMPARISON_CHOICE
from workbench.services.one_step import INFORMATION_SFTOK_ONLY
from workbench.services.reading_notes import (as_markdown, mi_notes, self_forcing_notes, self_forcing_reading,
                                              trajectory_notes)
from workbench.ui.components.analysis_plots import empty_plot, mi_bars, mi_grids, self_forcing_plot, trajectory_plot
from workbench.ui.components.analysis_stream import cancel_button, stream_analysis, wire_cancel
from workbench.ui.components.dataset_picker import DatasetPicker
from workbench.ui.components.errors import keep_error_visible, user_errors
from workbench.ui.components.model_picker import ModelPicker
from workbench.ui.components.tables import Measure, measures_frame
from workbench.ui.context import AppContext

DEFAULTS = ScreenDefaults()  # the model card's code-information numbers use the same settings
SFTOK_ONLY = "SFTok checkpoints only. " + INFORMATION_SFTOK_ONLY + "."

NO_MODEL = ("— none —", "")
# The measures that answer the screen's questions first: is there information between slots, does the decode
# gain from it, and how far its own guesses lead it from the teacher's codes; the cross-entropies behind them last.
SUMMARY_MEASURES = (
    Measure("loo_mi_bits", "LOO MI", "bits/slot"),
    Measure("ci_low", "LOO MI, CI low", "bits/slot"),
    Measure("ci_high", "LOO MI, CI high", "bits/slot"),
    Measure("info_gain_bits_per_image", "info gain, own codes", "bits/image"),
    Measure("teacher_gain_bits_per_image", "info gain, teacher's codes", "bits/image"),
    Measure("block_tc_bits_per_image", "block total correlation", "bits/image"),
    Measure("self_forcing_kl_bits", "self-forcing KL", "bits/slot"),
    Measure("last_step_accuracy", "last-step accuracy", "share of slots"),
    Measure("ce_all_masked_bits", "CE, all masked", "bits/slot"),
    Measure("ce_leave_one_out_bits", "CE, leave-one-out", "bits/slot"),
    *(Measure(reveal_key(f), f"CE hidden, {round(100 * f)}% revealed", "bits/slot") for f in REVEAL_FRACTIONS),
)


def summary_frame(report: InformationReport | None) -> pd.DataFrame:
    """One row per measure, one column per model (a dozen measures fit at any width; see tables)."""
    return measures_frame(report.summary_rows() if report else [], SUMMARY_MEASURES, "model")


def status_text(report: InformationReport) -> str:
    targets = {m.target_source for m in report.models}
    lines = [f"**{html.escape(report.dataset)}** ({report.split}): {report.num_images} images, "
             f"{len(report.positions)} of {report.num_slots} slots, {report.num_steps} decode steps, "
             f"temperature {report.temperature:g}, seed {report.seed}; {report.seconds:.1f} s."]
    if "teacher" in targets:
        lines.append("Targets: the teacher's proxy codes of these images.")
    else:
        lines.append(f"No teacher ({html.escape(report.teacher_note)}): each model is measured against its own "
                     "decode, which gauges self-consistency, not the data"
                     + (", and the two models are not measured against the same codes." if len(report.models) > 1
                        else "."))
    return "  \n".join(lines)


def gap_text(report: InformationReport) -> str:
    """How to read the self-forcing panels, then any note on their numbers."""
    notes = as_markdown(self_forcing_notes(report))
    return self_forcing_reading(report) + (f"\n\n{notes}" if notes else "")


class InformationPage:
    def __init__(self, ctx: AppContext, analyses: AnalysisService) -> None:
        self.ctx, self.analyses = ctx, analyses
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                self.model_a = ModelPicker(ctx.registry, "Model A", name="info-a",
                                           info=f"e.g. a stage-1 checkpoint folder in the workspace. {SFTOK_ONLY}")
                with gr.Row(equal_height=True):
                    # the embedded default's other-recipe twin, when it ships: SFVR against vanilla from the start
                    compare = COMPARISON_CHOICE if ctx.registry.comparison_present() else ""
                    self.model_b = gr.Dropdown([NO_MODEL, *ctx.registry.choices()], value=compare,
                                               label="Model B (optional)", allow_custom_value=True, scale=5,
                                               elem_id="info-b-picker",
                                               info="e.g. the stage-2 model trained from A, to compare (SFTok "
                                                    "only, as A)")
                    self.refresh_b = gr.Button("↻", scale=0, min_width=44, elem_id="info-b-refresh")
                self.data = DatasetPicker(ctx.workspace, "info")
                self.images = gr.Slider(2, MAX_MI_IMAGES, value=DEFAULTS.images, step=1, label="Images", elem_id="info-images",
                                        info="cost grows with images x slots")
                self.slots = gr.Slider(1, 256, value=DEFAULTS.slots, step=1, label="Slots measured by leave-one-out",
                                       elem_id="info-slots", info="a seeded random subset of the proxy slots")
                self.steps = gr.Slider(1, 16, value=DEFAULTS.steps, step=1, label="Decoding steps", elem_id="info-steps")
                with gr.Accordion("More settings", open=False):
                    self.temperature = gr.Slider(0, 3, value=DEFAULTS.temperature, step=0.05, label="Temperature")
                    self.seed = gr.Number(value=DEFAULTS.seed, precision=0, minimum=0, label="Seed")
                    self.block = gr.Slider(1, 64, value=DEFAULTS.block_slots, step=1, label="Slots per block (total correlation)",
                                           info="caps the chain-rule block of each step; more = slower")
                with gr.Row():
                    self.run = gr.Button("Measure", variant="primary", elem_id="info-run", scale=3)
                    self.cancel = cancel_button("info-cancel")
                self.status = gr.Markdown("Choose one or two models and measure. Help: `docs/screens.md#information`", elem_id="info-status")
            with gr.Column(scale=2):
                self.summary = gr.Dataframe(summary_frame(None), interactive=False, elem_id="info-summary",
                                            label="Summary: a column per model (CI = bootstrap interval over images)",
                                            wrap=True)
                self.bars = gr.Plot(empty_plot("Measure to see the mutual information per slot"),
                                    show_label=False, elem_id="info-mi")
                self.mi_notes = gr.Markdown(elem_id="info-mi-notes")
                self.grids = gr.Plot(show_label=False, elem_id="info-grid")
        with gr.Row():
            with gr.Column():
                self.trajectory = gr.Plot(show_label=False, elem_id="info-trajectory")
                self.trajectory_notes = gr.Markdown(elem_id="info-trajectory-notes")
        with gr.Row():
            with gr.Column():
                self.gap = gr.Plot(show_label=False, elem_id="info-gap")
                self.gap_notes = gr.Markdown(elem_id="info-gap-notes")
        self._wire()

    def on_run(self, model_a: str, model_b: str | None, dataset: str | None, split: str, images: float, slots: float,
               steps: float, temperature: float, seed: float | None, block: float, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """Streams the progress (the leave-one-out rows estimate the whole from the first chunk), then the results."""
        def work(report_progress):
            return self.analyses.information([model_a, model_b or ""], dataset, split, images, slots, steps,
                                             temperature, seed, block, progress=report_progress)[1]

        def done(report: InformationReport) -> tuple:
            return (status_text(report), summary_frame(report), mi_bars(report), as_markdown(mi_notes(report)),
                    mi_grids(report), trajectory_plot(report), as_markdown(trajectory_notes(report)),
                    self_forcing_plot(report), gap_text(report))

        yield from stream_analysis(work, done, 9, 0, progress, "information")

    def on_refresh_b(self, current: str | None) -> gr.Dropdown:
        choices = [NO_MODEL, *self.ctx.registry.choices()]
        return gr.Dropdown(choices=choices, value=current if current in [v for _, v in choices] else "")

    def _wire(self) -> None:
        run = self.run.click(user_errors(self.on_run),
                       [self.model_a.dropdown, self.model_b, self.data.dropdown, self.data.split, self.images,
                        self.slots, self.steps, self.temperature, self.seed, self.block],
                       [self.status, self.summary, self.bars, self.mi_notes, self.grids, self.trajectory,
                        self.trajectory_notes, self.gap, self.gap_notes],
                       api_name="information", show_progress="full")
        keep_error_visible(run, self.status)
        wire_cancel(self.cancel, self.status, [run], "information_cancel")
        self.refresh_b.click(self.on_refresh_b, [self.model_b], [self.model_b], api_name="information_refresh_model_b",
                             show_progress="hidden")

    def reload_lists_on(self, triggers: list) -> None:
        self.model_a.reload_on(triggers)
        self.data.reload_on(triggers)
        gr.on(triggers, self.on_refresh_b, [self.model_b], [self.model_b], show_progress="hidden",
              api_visibility="private")


def build(ctx: AppContext, analyses: AnalysisService) -> InformationPage:
    return InformationPage(ctx, analyses)


__all__ = ["InformationPage", "build", "status_text", "summary_frame"]
