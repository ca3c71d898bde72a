"""Evaluate screen: rFID / IS / PSNR / SSIM / LPIPS / codebook usage per model x decoding steps, as background jobs.

A launch is checked (``workbench.services.evaluations``) on a worker thread and becomes one ``eval`` run per model
in the job manager, next to training runs; a ``gr.Timer`` follows their progress and redraws the paper-shaped
table (``workbench.services.eval_tables``) from the store, with the reported numbers in a table of their own.
"""
from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr
import pandas as pd

from workbench.runs.records import RunRecord, RunStatus
from workbench.services.eval_tables import (MEASURED_COLUMNS, measured_table, reported_table, rfid_figure,
                                            write_csv, write_latex)
from workbench.services.evaluations import (EvalRefused, EvalRequest, default_inception, evaluation_runs,
                                            launch_of, plan_evaluation, submit_evaluation)
from workbench.services.launches import INVALID, SUBMITTED, VALIDATING, Launches
from workbench.services.model_registry import DEFAULT_CHOICE, TOKENIZERS
from workbench.ui.components.choices import kept_value, refreshed
from workbench.ui.components.dataset_picker import DatasetPicker
from workbench.ui.components.errors import error_text, keep_error_visible, user_errors
from workbench.ui.components.executor_picker import ExecutorPicker
from workbench.ui.context import AppContext

REFRESH_SECONDS = 2.0
APPLIED = "!"  # suffix of the followed launch id once its runs were put in the results
JOB_COLUMNS = ["run", "model", "status", "images", "progress", "ETA", "device"]
REPORTED_NOTE = ("**Reported** by the papers and official READMEs (ImageNet 256, 50,000 validation images, real "
                 "Inception weights): reference only, not measured here and never mixed into the rows above. "
                 "Compare a measured rFID with them only at that protocol and image count.")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class EvaluatePage:
    def __init__(self, ctx: AppContext) -> None:
        if ctx.jobs is None:
            raise ValueError("the Evaluate screen needs a job manager (AppContext.create(with_jobs=True))")
        self.ctx, self.jobs, self.store = ctx, ctx.jobs, ctx.jobs.store
        self.launches = Launches()
        self.followed = gr.State("")  # the launch the status line follows ("" = none; + APPLIED: results set)
        self.shown = gr.State(())  # what the results were last drawn from
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### Evaluate\nrFID, IS, PSNR, SSIM, LPIPS and codebook usage per model and decoding "
                            "step count, as background jobs. Help: `docs/screens.md#evaluate`")
                self.models = gr.Dropdown(self._model_choices(), value=[DEFAULT_CHOICE], multiselect=True,
                                          allow_custom_value=True, label="Models", elem_id="eval-models",
                                          info="the embedded models, any run's model folder, official files in the "
                                               "workspace; one job per model")
                self.dataset = DatasetPicker(ctx.workspace, "eval")
                with gr.Row():
                    self.steps = gr.Textbox("1,2,4,8", label="Decoding steps", elem_id="eval-steps")
                    self.num_images = gr.Number(1000, precision=0, minimum=2, label="Images", elem_id="eval-images",
                                                info="the first N of the split (the field's protocol: 50,000)")
                with gr.Row():
                    self.batch = gr.Number(32, precision=0, minimum=1, label="Batch size (per process)")
                    self.device = gr.Textbox("cpu", label="Device", elem_id="eval-device",
                                             info="cpu, cuda:0, or cuda:0,1 (one process per GPU)")
                    self.processes = gr.Number(1, precision=0, minimum=1, label="CPU processes", elem_id="eval-procs",
                                               info="> 1: torchrun on this machine's CPU")
                self.lpips = gr.Checkbox(True, label="LPIPS (skipped with a note when its weights are not local)")
                self.inception = gr.Textbox(default_inception(ctx.workspace), label="Inception weights file",
                                            elem_id="eval-inception",
                                            info="torch-fidelity's weights-inception-2015-12-05-6726825d.pth; "
                                                 "nothing is downloaded")
                self.executor = ExecutorPicker(ctx.workspace.root, name="eval")
                self.launch = gr.Button("Launch evaluation", variant="primary", elem_id="eval-launch")
                self.status = gr.Markdown("", elem_id="eval-status")
            with gr.Column(scale=2):
                gr.Markdown("### Jobs")
                self.table = gr.Dataframe(self.jobs_frame(), interactive=False, elem_id="eval-jobs",
                                          show_label=False, max_height=260)
                with gr.Row(equal_height=True):
                    self.run = gr.Dropdown(self.run_choices(), label="Run", scale=4, elem_id="eval-run")
                    self.cancel = gr.Button("Cancel", scale=1, variant="stop", elem_id="eval-cancel")
                    self.resume = gr.Button("Resume", scale=1, elem_id="eval-resume")
                gr.Markdown("### Results (measured in this workspace)")
                self.result_runs = gr.Dropdown(self.run_choices(), multiselect=True, label="Results of",
                                               elem_id="eval-result-runs", value=self.newest_launch_runs(),
                                               info="finished evaluation runs; a new launch's runs are followed")
                self.results = gr.Dataframe(pd.DataFrame(columns=MEASURED_COLUMNS), interactive=False,
                                            elem_id="eval-results", show_label=False)
                self.plot = gr.Plot(label="rFID against decoding steps", elem_id="eval-plot")
                gr.Markdown(REPORTED_NOTE, elem_id="eval-reported-note")
                self.reported = gr.Dataframe(reported_table(), interactive=False, elem_id="eval-reported",
                                             show_label=False)
                with gr.Row(equal_height=True):
                    self.export = gr.Button("Export CSV and LaTeX", scale=1, elem_id="eval-export")
                    self.files = gr.File(label="Exports", file_count="multiple", scale=3, elem_id="eval-files")
        self.timer = gr.Timer(REFRESH_SECONDS)
        self._wire()

    # -- reading ----------------------------------------------------------------------------------
    def _model_choices(self) -> list[tuple[str, str]]:
        return self.ctx.registry.choices(TOKENIZERS)

    def runs(self) -> list[RunRecord]:
        return evaluation_runs(self.store)

    def run_choices(self) -> list[tuple[str, str]]:
        return [(f"{r.name or r.id} [{r.id[-6:]}]", r.id) for r in self.runs()]

    def newest_launch_runs(self) -> list[str]:
        runs = self.runs()
        newest = launch_of(runs[0]) if runs else None
        return [r.id for r in runs if newest is not None and launch_of(r) == newest]

    def jobs_frame(self) -> pd.DataFrame:
        runs = self.runs()
        latest = self.store.latest([r.id for r in runs], ["eval/images_done", "eval/images_total"]) if runs else None
        rows = [[x.label, "", "validating…" if x.state == VALIDATING else "not launched (see status)", "", "", "",
                 x.device] for x in self.launches.unsettled()]
        for run in runs:
            mine = latest[latest["run_id"] == run.id] if latest is not None else pd.DataFrame(columns=["key", "value"])
            values = dict(zip(mine["key"], mine["value"]))
            total = values.get("eval/images_total") or (run.config or {}).get("evaluate", {}).get("num_images")
            done = values.get("eval/images_done", 0)
            progress = self.store.progress(run.id)
            rows.append([run.id, (run.config or {}).get("evaluate", {}).get("label", ""), run.status,
                         f"{int(done)} / {int(total)}" if total else f"{int(done)}",
                         "" if progress.fraction is None else f"{100 * progress.fraction:.0f}%",
                         eta_text(progress.eta_s) if run.status == RunStatus.RUNNING else "", run.device])
        return pd.DataFrame(rows, columns=JOB_COLUMNS)

    def status_text(self, launch_id: str, note: str = "") -> str:
        parts = [note] if note else []
        launch = self.launches.get(launch_id) if launch_id else None
        if launch is not None and launch.state == VALIDATING:
            parts.append(f"Launching {html.escape(launch.label)}: checking models, data and weights…")
        elif launch is not None and launch.state == INVALID:
            parts.append(error_text(f"{launch.label} not launched: {launch.error}"))
        elif launch is not None and launch.state == SUBMITTED:
            for run_id in launch.run_ids[:8]:
                run = self.store.get_run(run_id)
                parts.append(f"**{html.escape(run.name or run.id)}**: {run.status}"
                             + (f" ({html.escape((run.error or '').splitlines()[0])})" if run.error else ""))
        return "  \n".join(parts)

    def results_of(self, run_ids: list[str] | None) -> tuple[pd.DataFrame, Any]:
        runs = [self.store.get_run(r) for r in (run_ids or []) if r]
        measured = measured_table(self.store, runs)
        return measured, rfid_figure(measured)

    # -- events -----------------------------------------------------------------------------------
    def on_launch(self, models, dataset, split, steps, num_images, batch, device, processes, lpips, inception,
                  *executor_values: Any) -> tuple:
        """Acknowledge at once; models are loaded and files checked in the background (the jobs list says so)."""
        _, slurm = self.executor.split([*executor_values])
        request = EvalRequest(models=tuple(models or ()), dataset=dataset, split=split, steps=str(steps or ""),
                              num_images=num_images, batch_size=batch, device=(device or "cpu").strip(),
                              processes=processes or 1, lpips=bool(lpips), inception=inception or "")
        count = len(request.models)
        launch = self.launches.start(f"evaluation of {count} model{'s' * (count != 1)}", "eval", request.device,
                                     lambda: [r.id for r in submit_evaluation(
                                         self.jobs, plan_evaluation(self.ctx.registry, self.store, request), slurm)],
                                     refused=(EvalRefused, ValueError))
        return self.status_text(launch.id), self.jobs_frame(), launch.id

    def on_cancel(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose an evaluation run first")
        run = self.jobs.cancel(run_id)
        return f"**{html.escape(run.name)}**: cancel sent (its partial statistics are saved, then it stops).", \
            self.jobs_frame()

    def on_resume(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose an evaluation run first")
        run = self.jobs.resume(run_id)
        return f"**{html.escape(run.name)}**: resumed from its saved partial statistics.", self.jobs_frame()

    def on_tick(self, followed: str, shown: tuple, run_id: str | None, result_runs: list[str] | None) -> tuple:
        """Jobs, lists and (when the runs or their rows changed) the results; every list sends its choices and a
        value among them together."""
        choices = self.run_choices()
        launch_id, applied = followed.removesuffix(APPLIED), followed.endswith(APPLIED)
        launch = self.launches.get(launch_id) if launch_id else None
        if launch is not None and launch.state == SUBMITTED and launch.run_ids and not applied:
            result_runs, run_id = list(launch.run_ids), launch.run_ids[0]  # a new launch's runs, shown once:
            followed = launch_id + APPLIED  # after that the user's picks stay
        result_runs = kept_value(choices, result_runs, True, self.newest_launch_runs())
        signature = tuple((r, self.store.get_run(r).status, self.store.metric_count(r)) for r in result_runs)
        results: tuple = (gr.skip(), gr.skip())
        if signature != tuple(shown):
            results = self.results_of(result_runs)
        status = self.status_text(launch.id) if launch is not None else gr.skip()
        return (followed, signature, status, self.jobs_frame(),
                gr.Dropdown(choices=choices, value=kept_value(choices, run_id, fallback=lambda v: v[0] if v else None)),
                gr.Dropdown(choices=choices, value=result_runs), *results)

    def on_results(self, run_ids: list[str] | None) -> tuple:
        return self.results_of(run_ids)

    def on_export(self, run_ids: list[str] | None) -> list[str]:
        measured, _ = self.results_of(run_ids)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.ctx.exports_dir
        return [str(write_csv(measured, reported_table(), folder / f"evaluation-{stamp}.csv")),
                str(write_latex(measured, reported_table(), folder / f"evaluation-{stamp}.tex"))]

    def on_open(self, models: list[str] | None, run_id: str | None, result_runs: list[str] | None) -> tuple:
        model_choices = self._model_choices()
        choices = self.run_choices()
        return (refreshed(model_choices, models, True, [DEFAULT_CHOICE]),
                refreshed(choices, run_id, fallback=lambda v: v[0] if v else None),
                refreshed(choices, result_runs, True, self.newest_launch_runs()))

    def reload_lists_on(self, triggers: list) -> None:
        """Models, datasets and runs are read when the screen opens."""
        self.dataset.reload_on(triggers)
        gr.on(triggers, self.on_open, [self.models, self.run, self.result_runs],
              [self.models, self.run, self.result_runs], show_progress="hidden", api_visibility="private")

    def _wire(self) -> None:
        form = [self.models, self.dataset.dropdown, self.dataset.split, self.steps, self.num_images, self.batch,
                self.device, self.processes, self.lpips, self.inception, *self.executor.inputs]
        launched = self.launch.click(user_errors(self.on_launch), form, [self.status, self.table, self.followed],
                                     api_name="eval_launch")
        keep_error_visible(launched, self.status)
        for button, fn, name in ((self.cancel, self.on_cancel, "eval_cancel"),
                                 (self.resume, self.on_resume, "eval_resume")):
            event = button.click(user_errors(fn), [self.run], [self.status, self.table], api_name=name)
            keep_error_visible(event, self.status)
        self.result_runs.input(user_errors(self.on_results), [self.result_runs], [self.results, self.plot],
                               api_name="eval_results", show_progress="hidden")
        self.export.click(user_errors(self.on_export), [self.result_runs], [self.files], api_name="eval_export")
        self.timer.tick(self.on_tick, [self.followed, self.shown, self.run, self.result_runs],
                        [self.followed, self.shown, self.status, self.table, self.run, self.result_runs,
                         self.results, self.plot],
                        show_progress="hidden", api_name="eval_refresh", trigger_mode="once")


def build(ctx: AppContext) -> EvaluatePage:
    return EvaluatePage(ctx)
