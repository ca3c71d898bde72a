"""Train screen: launch a stage or a sweep, watch jobs, overlay live curves, diff configs.

The job manager (``workbench.runs.manager``) does the work and owns the metrics store; this screen maps the
form to overrides (``workbench.services.training_form``), polls with a ``gr.Timer`` and draws.
"""
from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from workbench.io.datasets import build_workspace_default_dataset, list_datasets
from workbench.runs.manager import InvalidConfigError
from workbench.runs.records import STAGES, RunRecord
from workbench.services.training_form import LaunchForm, parse_grid
from workbench.ui.components.errors import user_errors
from workbench.ui.components.executor_picker import ExecutorPicker
from workbench.ui.components.plots import as_plot, training_curves
from workbench.ui.context import AppContext

REFRESH_SECONDS = 2.0
DEFAULT_TEACHER = "embedded default teacher"
JOB_COLUMNS = ["run", "stage", "status", "step", "progress", "ETA", "device"]
DEFAULT_KEYS = ("train/loss", "loss")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class TrainPage:
    def __init__(self, ctx: AppContext) -> None:
        if ctx.jobs is None:
            raise ValueError("the Train screen needs a job manager (AppContext.create(with_jobs=True))")
        self.ctx, self.jobs, self.store = ctx, ctx.jobs, ctx.jobs.store
        self.known_runs = gr.State(())
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### Launch")
                self.stage = gr.Radio(list(STAGES), value="teacher", label="Stage", elem_id="train-stage")
                self.preset = gr.Dropdown(["tiny", "B", "L"], value="tiny", label="Model preset")
                with gr.Row(equal_height=True):
                    self.dataset = gr.Dropdown(list_datasets(ctx.workspace), label="Dataset (in the workspace)",
                                               allow_custom_value=True, scale=4, elem_id="train-dataset")
                    self.build_data = gr.Button("Build default", scale=1, min_width=100, elem_id="train-build-data")
                self.teacher = gr.Dropdown(self._model_choices("maskgit_vqgan"), label="Teacher (stages 1-3)",
                                           info="a teacher folder, or the official maskgit-vqgan-imagenet-f16-256.bin",
                                           allow_custom_value=True)
                self.tokenizer = gr.Dropdown(self._model_choices("sftok"), label="Tokenizer (generator stage)",
                                             allow_custom_value=True)
                self.init = gr.Dropdown([""] + self._model_choices("sftok"), value="", label="Initial weights (stages 2, 3)",
                                        allow_custom_value=True)
                with gr.Row():
                    self.max_steps = gr.Number(200, precision=0, minimum=1, label="Steps", elem_id="train-steps")
                    self.batch = gr.Number(16, precision=0, minimum=1, label="Batch")
                with gr.Row():
                    self.lr = gr.Number(1e-4, minimum=0, label="Learning rate")
                    self.seed = gr.Number(42, precision=0, minimum=0, label="Seed")
                with gr.Accordion("Ablation switches (stage 2: SFVR)", open=False):
                    self.sfvr = gr.Checkbox(True, label="Self-forcing (off = vanilla teacher context)")
                    self.replace_prob = gr.Slider(0, 1, value=1.0, step=0.05, label="Replace probability")
                    self.context_source = gr.Radio(["first", "prev"], value="first", label="Context source")
                    self.mask_schedule = gr.Dropdown(["arccos", "linear", "cosine", "square"], value="arccos",
                                                     label="Mask schedule")
                    self.unmasked = gr.Slider(0, 1, value=0.1, step=0.05, label="Weight of unmasked slots in the loss")
                self.extra = gr.Textbox(label="More overrides (key=value per line)", lines=2,
                                        placeholder="optim.weight_decay=0.0")
                self.device = gr.Textbox("cpu", label="Device", info="cpu, cuda:0 or cuda:0,1 (local runs)")
                self.executor = ExecutorPicker(ctx.workspace.root)
                self.launch = gr.Button("Launch run", variant="primary", elem_id="train-launch")
                with gr.Accordion("Sweep grid", open=False):
                    self.grid = gr.Textbox(label="One key=v1, v2, ... per line", lines=3,
                                           placeholder="optim.lr=1e-4, 3e-4\nsfvr.replace_prob=0.5, 1.0")
                    self.launch_sweep = gr.Button("Launch sweep", elem_id="train-sweep")
                self.status = gr.Markdown(elem_id="train-status")
            with gr.Column(scale=2):
                gr.Markdown("### Jobs")
                self.table = gr.Dataframe(self.jobs_frame(), interactive=False, elem_id="train-jobs", max_height=260)
                with gr.Row(equal_height=True):
                    self.run = gr.Dropdown(self.run_choices(), label="Run", scale=4, elem_id="train-run")
                    self.cancel = gr.Button("Cancel", scale=1, variant="stop")
                    self.resume = gr.Button("Resume", scale=1)
                self.log = gr.Code(label="Log tail", language=None, lines=8, max_lines=8, elem_id="train-log")
                gr.Markdown("### Curves")
                with gr.Row():
                    self.curve_runs = gr.Dropdown(self.run_choices(), multiselect=True, label="Runs (overlay)",
                                                  scale=3, elem_id="train-curve-runs")
                    self.keys = gr.Dropdown(self.store.keys(), multiselect=True, label="Metrics", scale=3,
                                            elem_id="train-keys")
                    self.smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing", scale=2)
                self.curves = gr.Plot(label="Training curves", elem_id="train-curves")
                with gr.Accordion("Config diff", open=False):
                    with gr.Row():
                        self.diff_a = gr.Dropdown(self.run_choices(), label="Run A")
                        self.diff_b = gr.Dropdown(self.run_choices(), label="Run B")
                    self.diff = gr.Dataframe(pd.DataFrame(columns=["key", "change", "A", "B"]), interactive=False)
        self.timer = gr.Timer(REFRESH_SECONDS)
        self._wire()

    # -- data -------------------------------------------------------------------------------------
    def _model_choices(self, model_type: str) -> list[str]:
        found = [self.ctx.workspace.display(p) for p in self.ctx.workspace.model_folders((model_type,))]
        teacher_dir = self.ctx.registry.teacher_dir
        if model_type == "maskgit_vqgan" and teacher_dir is not None and (teacher_dir / "config.json").is_file():
            found.insert(0, DEFAULT_TEACHER)
        return found

    def _model_path(self, choice: str) -> str:
        if choice == DEFAULT_TEACHER:
            return str(self.ctx.registry.teacher_dir)
        return str(self.ctx.workspace.resolve(choice))

    def runs(self) -> list[RunRecord]:
        return sorted(self.store.list_runs(), key=lambda r: r.created_at or 0.0, reverse=True)

    def run_choices(self) -> list[tuple[str, str]]:
        return [(r.name or r.id, r.id) for r in self.runs()]

    def jobs_frame(self) -> pd.DataFrame:
        rows = []
        for r in self.runs():
            p = self.store.progress(r.id)
            rows.append([r.name or r.id, r.stage, r.status, "" if p.step is None else p.step,
                         "" if p.fraction is None else f"{100 * p.fraction:.0f}%",
                         _eta(p.eta_s) if r.status == "running" else "", r.device])
        return pd.DataFrame(rows, columns=JOB_COLUMNS)

    def curves_plot(self, run_ids: list[str] | None, keys: list[str] | None, smoothing: float):
        run_ids = [r for r in (run_ids or []) if r]
        keys = list(keys or [])
        frame = self.store.compare(run_ids, keys, max_points=600, smoothing=float(smoothing or 0.0)) if run_ids and keys \
            else pd.DataFrame(columns=["run_id", "run_name", "key", "step", "value"])
        return as_plot(training_curves(frame, keys))

    # -- events -----------------------------------------------------------------------------------
    def _form(self, stage, preset, dataset, teacher, tokenizer, init, max_steps, batch, lr, seed, sfvr, replace_prob,
              context_source, mask_schedule, unmasked, extra) -> LaunchForm:
        return LaunchForm(stage=stage, model_preset=preset, dataset=dataset or "", teacher=teacher or "",
                          tokenizer=tokenizer or "", init_weights=init or "", max_steps=int(max_steps or 1),
                          batch_size=int(batch or 1), lr=float(lr or 0.0), seed=int(seed or 0), sfvr_enabled=bool(sfvr),
                          replace_prob=float(replace_prob), context_source=context_source, mask_schedule=mask_schedule,
                          unmasked_weight=float(unmasked), extra=extra or "")

    def on_launch(self, *values: Any) -> tuple:
        (*form_values, device), slurm = self.executor.split(values)
        form = self._form(*form_values)
        try:
            run = self.jobs.submit(form.stage, None, form.overrides(self.ctx.workspace, self._model_path),
                                   device=(device or "cpu").strip(), slurm=slurm)
        except InvalidConfigError as err:
            raise gr.Error(f"invalid configuration: {err}", title="Not launched") from err
        return self._after_submit(f"Queued **{html.escape(run.id)}** (stage {run.stage}).", [run.id])

    def on_sweep(self, grid_text: str, *values: Any) -> tuple:
        (*form_values, device), slurm = self.executor.split(values)
        form = self._form(*form_values)
        grid = parse_grid(grid_text)
        if not grid:
            raise ValueError("sweep grid: add at least one line key=v1, v2, ...")
        try:
            sweep = self.jobs.submit_sweep(form.stage, None, grid, form.overrides(self.ctx.workspace, self._model_path),
                                           device=(device or "cpu").strip(), slurm=slurm)
        except InvalidConfigError as err:
            raise gr.Error(f"invalid configuration: {err}", title="Not launched") from err
        return self._after_submit(f"Queued sweep **{html.escape(sweep.id)}**: {len(sweep.run_ids)} runs.", sweep.run_ids)

    def _after_submit(self, message: str, run_ids: list[str]) -> tuple:
        choices = self.run_choices()
        return (message, self.jobs_frame(), gr.Dropdown(choices=choices, value=run_ids[0]),
                gr.Dropdown(choices=choices, value=run_ids), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices),
                tuple(r for _, r in choices))

    def on_build_dataset(self, progress: gr.Progress = gr.Progress()) -> tuple:
        progress(0.05, desc="building the default dataset (64 px crops of the bundled photos)")
        built = build_workspace_default_dataset(self.ctx.workspace, train_crops=self.ctx.default_dataset_crops)
        return gr.Dropdown(choices=list_datasets(self.ctx.workspace), value=built.label), \
            f"Default dataset ready: **{built.label}** ({len(built.train_sources)} train shards)."

    def on_cancel(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose a run first")
        run = self.jobs.cancel(run_id)
        return f"{run.id}: {run.status}", self.jobs_frame()

    def on_resume(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose a run first")
        run = self.jobs.resume(run_id)
        return f"{run.id}: {run.status} (resumes from its last checkpoint)", self.jobs_frame()

    def on_log(self, run_id: str | None) -> str:
        return self.jobs.log_tail(run_id) if run_id else ""

    def on_diff(self, a: str | None, b: str | None) -> pd.DataFrame:
        if not a or not b:
            return pd.DataFrame(columns=["key", "change", "A", "B"])
        rows = self.store.config_diff(a, b).rows()
        return pd.DataFrame([(k, c, "" if x is None else str(x), "" if y is None else str(y)) for k, c, x, y in rows],
                            columns=["key", "change", "A", "B"])

    def on_tick(self, known: tuple, run_id: str | None, curve_runs: list[str] | None, keys: list[str] | None,
                smoothing: float) -> tuple:
        """Refresh table, log, curves; dropdown choices only when the set of runs or keys changed."""
        choices = self.run_choices()
        ids = tuple(r for _, r in choices)
        all_keys = self.store.keys()
        if ids != tuple(known):
            runs_update = gr.Dropdown(choices=choices)
            if not curve_runs and ids:
                curve_runs = [ids[0]]
                runs_update = gr.Dropdown(choices=choices, value=curve_runs)
            updates = (runs_update, gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices))
        else:
            updates = (gr.skip(), gr.skip(), gr.skip(), gr.skip())
        if not keys and all_keys:
            keys = [k for k in DEFAULT_KEYS if k in all_keys][:1] or all_keys[:1]
            keys_update = gr.Dropdown(choices=all_keys, value=keys)
        else:
            keys_update = gr.Dropdown(choices=all_keys)
        return (ids, self.jobs_frame(), self.on_log(run_id), *updates, keys_update,
                self.curves_plot(curve_runs, keys, smoothing))

    def _wire(self) -> None:
        form = [self.stage, self.preset, self.dataset, self.teacher, self.tokenizer, self.init, self.max_steps,
                self.batch, self.lr, self.seed, self.sfvr, self.replace_prob, self.context_source, self.mask_schedule,
                self.unmasked, self.extra, self.device, *self.executor.inputs]
        submitted = [self.status, self.table, self.run, self.curve_runs, self.diff_a, self.diff_b, self.known_runs]
        self.launch.click(user_errors(self.on_launch), form, submitted, api_name="train_launch")
        self.launch_sweep.click(user_errors(self.on_sweep), [self.grid, *form], submitted, api_name="train_sweep")
        self.build_data.click(user_errors(self.on_build_dataset), None, [self.dataset, self.status],
                              api_name="train_build_dataset")
        self.cancel.click(user_errors(self.on_cancel), [self.run], [self.status, self.table], api_name="train_cancel")
        self.resume.click(user_errors(self.on_resume), [self.run], [self.status, self.table], api_name="train_resume")
        self.run.change(user_errors(self.on_log), [self.run], [self.log], api_name="train_log", show_progress="hidden")
        curve_inputs = [self.curve_runs, self.keys, self.smoothing]
        for i, widget in enumerate(curve_inputs):
            widget.change(user_errors(self.curves_plot), curve_inputs, [self.curves], show_progress="hidden",
                          api_name="train_curves" if i == 0 else False)
        self.diff_a.change(user_errors(self.on_diff), [self.diff_a, self.diff_b], [self.diff], api_name="train_diff")
        self.diff_b.change(user_errors(self.on_diff), [self.diff_a, self.diff_b], [self.diff], api_name=False)
        self.timer.tick(self.on_tick, [self.known_runs, self.run, *curve_inputs],
                        [self.known_runs, self.table, self.log, self.curve_runs, self.run, self.diff_a, self.diff_b,
                         self.keys, self.curves], show_progress="hidden", api_name="train_refresh")


def build(ctx: AppContext) -> TrainPage:
    return TrainPage(ctx)


__all__ = ["TrainPage", "build"]
