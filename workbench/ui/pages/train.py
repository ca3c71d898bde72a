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
from workbench.services.launches import INVALID, SUBMITTED, VALIDATING, Launches
from workbench.services.run_log import live_log
from workbench.services.run_results import default_sweep_metric, overlay_diff, sweep_table
from workbench.services.training_form import LaunchForm, launch_note, parse_grid
from workbench.ui.components.analysis_plots import empty_plot
from workbench.ui.components.choices import kept_value, refreshed
from workbench.ui.components.errors import error_text, keep_error_visible, user_errors
from workbench.ui.components.executor_picker import ExecutorPicker
from workbench.ui.components.run_views import (WAITING, curves, gallery_items, sample_slider, split_keys,
                                                sweep_plot)
from workbench.ui.context import AppContext
from workbench.ui.state import TrainWatch

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
        self.watch = gr.State(TrainWatch())
        self.known_samples = gr.State(())
        self.launches = Launches()
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### Launch\nHelp: `docs/screens.md#train`")
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
                                        placeholder="optim.weight_decay=0.0", elem_id="train-extra")
                self.device = gr.Textbox("cpu", label="Device", info="cpu, cuda:0 or cuda:0,1 (local runs)")
                self.executor = ExecutorPicker(ctx.workspace.root)
                self.launch = gr.Button("Launch run", variant="primary", elem_id="train-launch")
                with gr.Accordion("Sweep grid", open=False, elem_id="train-sweep-grid"):
                    self.grid = gr.Textbox(label="One key=v1, v2, ... per line", lines=3, elem_id="train-grid",
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
                self.log = gr.Code(label="Live log (printed lines, then one line per logged step and evaluation)",
                                   language=None, lines=10, max_lines=10, elem_id="train-log")
                gr.Markdown("### Curves")
                with gr.Row():
                    self.curve_runs = gr.Dropdown(self.run_choices(), multiselect=True, label="Runs (overlay)",
                                                  scale=3, elem_id="train-curve-runs")
                    self.smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing", scale=1)
                with gr.Row():
                    train_keys, eval_keys = split_keys(self.store.keys())
                    # The metric lists change with the overlaid runs, in the same tick that changes the runs; the
                    # browser fires the runs' change event before it applies the new metric values, so that event
                    # can carry a metric the new list lacks. Gradio's choice check would fail it: the values are
                    # kept to the choices here (kept_value) and unknown ones plot as "waiting" instead.
                    self.keys = gr.Dropdown(train_keys, multiselect=True, label="Training metrics", scale=1,
                                            elem_id="train-keys", allow_custom_value=True)
                    self.eval_keys = gr.Dropdown(eval_keys, multiselect=True, label="Eval metrics", scale=1,
                                                 elem_id="train-eval-keys", allow_custom_value=True)
                self.curves = gr.Plot(empty_plot(f"Training curves: {WAITING}"), show_label=False,
                                      elem_id="train-curves")
                self.eval_curves = gr.Plot(empty_plot(f"Eval metrics: {WAITING}"), show_label=False,
                                           elem_id="train-eval-curves")
                self.overlay_diff = gr.Dataframe(overlay_diff([]), interactive=False, elem_id="train-overlay-diff",
                                                 label="Where the overlaid runs' configs differ", max_height=200)
                gr.Markdown("### Eval samples")
                self.sample_step = gr.Slider(0, 1, value=1, step=1, label="Eval step (images/step-*.png)",
                                             elem_id="train-sample-step")
                # each picture is 8 eval images stacked, one row each (input, then decodes): tall, so few per row
                self.samples = gr.Gallery(columns=4, height=620, object_fit="contain", elem_id="train-samples",
                                          preview=True,  # the whole tall picture with its caption, not a crop
                                          label="One picture per overlaid run: 8 eval images, one per row; "
                                                "the caption names the columns", allow_preview=True)
                gr.Markdown("### Sweep results")
                with gr.Row(equal_height=True):
                    self.sweep = gr.Dropdown(self.sweep_choices(), label="Sweep", scale=3, elem_id="train-sweep-pick")
                    self.export_sweep = gr.Button("Export CSV", scale=1, elem_id="train-sweep-export")
                self.sweep_table = gr.Dataframe(pd.DataFrame(), interactive=False, elem_id="train-sweep-table",
                                                max_height=260, wrap=True, label="One row per point: swept values, "
                                                "then the judged metric (final, best), then the rest; click a header "
                                                "to sort")
                self.sweep_file = gr.File(visible=False, interactive=False, elem_id="train-sweep-csv")
                with gr.Row():
                    self.sweep_x = gr.Dropdown([], label="Swept field", scale=1, elem_id="train-sweep-x")
                    self.sweep_y = gr.Dropdown([], label="Metric", scale=1, elem_id="train-sweep-y")
                self.sweep_plot = gr.Plot(empty_plot("choose a sweep"), show_label=False, elem_id="train-sweep-plot")
                with gr.Accordion("Config diff", open=False):
                    with gr.Row():
                        self.diff_a = gr.Dropdown(self.run_choices(), label="Run A")
                        self.diff_b = gr.Dropdown(self.run_choices(), label="Run B")
                    self.diff = gr.Dataframe(pd.DataFrame(columns=["key", "change", "A", "B"]), interactive=False)
        self.timer = gr.Timer(REFRESH_SECONDS)
        # the form as last launched, kept in this browser: a reload mid-run shows what was launched, not defaults
        self.saved_form = gr.BrowserState({}, storage_key="sftok-workbench-train-form")
        self._wire()

    @property
    def remembered(self) -> dict[str, gr.components.Component]:
        """The launch settings a reload restores (lists of datasets and models are re-read instead)."""
        return {"stage": self.stage, "preset": self.preset, "steps": self.max_steps, "batch": self.batch,
                "lr": self.lr, "seed": self.seed, "sfvr": self.sfvr, "replace_prob": self.replace_prob,
                "context_source": self.context_source, "mask_schedule": self.mask_schedule,
                "unmasked": self.unmasked, "extra": self.extra, "device": self.device, "grid": self.grid}

    def save_form(self, *values: Any) -> dict[str, Any]:
        return dict(zip(self.remembered, values))

    def restore_form(self, saved: dict[str, Any] | None, restored: bool) -> tuple:
        if restored:  # once per page: later visits to the tab keep what the user typed since
            return (True, *(gr.skip() for _ in self.remembered))
        saved = saved or {}
        return (True, *(saved[name] if name in saved else gr.skip() for name in self.remembered))

    def restore_on(self, opened: Any) -> None:
        """When the screen first opens on a page, put back the settings of this browser's last launch. On the
        tab's first select, not on page load: a tab's fields are made when it is first shown, and values sent
        to them before that are lost."""
        restored = gr.State(False)
        opened(self.restore_form, [self.saved_form, restored], [restored, *self.remembered.values()],
               show_progress="hidden", api_visibility="private")

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

    def sweep_choices(self) -> list[tuple[str, str]]:
        return [(f"{w.name} ({len(w.grid)} fields)", w.id) for w in sorted(self.store.list_sweeps(),
                                                                            key=lambda w: w.created_at, reverse=True)]

    def launch_rows(self) -> list[list]:
        """Launches still validating or refused, above the runs: the table is right from the click on."""
        return [[x.label, x.stage, "validating…" if x.state == VALIDATING else "invalid (see status)", "", "", "",
                 x.device] for x in self.launches.unsettled()]

    def curves_plot(self, run_ids: list[str] | None, keys: list[str] | None, smoothing: float):
        return curves(self.store, run_ids or [], keys or [], float(smoothing or 0.0), "Training curves")

    def eval_plot(self, run_ids: list[str] | None, keys: list[str] | None, smoothing: float):
        return curves(self.store, run_ids or [], keys or [], 0.0, "Eval metrics")

    def status_text(self, watch: TrainWatch) -> str:
        """The status line from what the followed launch and runs are now (never a stale state)."""
        parts = [watch.note] if watch.note else []
        launch = self.launches.get(watch.launch_id) if watch.launch_id else None
        if launch is not None and launch.state == VALIDATING:
            parts.append(f"Launching {html.escape(launch.label)}: validating the config (the launcher's dry run)…")
        elif launch is not None and launch.state == INVALID:
            parts.append(error_text(f"{launch.label} not launched, invalid configuration: {launch.error}"))
        run_ids = launch.run_ids if launch is not None and launch.state == SUBMITTED else watch.run_ids
        for run_id in run_ids[:6]:
            run = self.store.get_run(run_id)
            parts.append(f"**{html.escape(run.name or run.id)}**: {run.status}"
                         + (f" ({html.escape((run.error or '').splitlines()[0])})" if run.error else ""))
        return "  \n".join(parts)

    # -- events -----------------------------------------------------------------------------------
    def _form(self, stage, preset, dataset, teacher, tokenizer, init, max_steps, batch, lr, seed, sfvr, replace_prob,
              context_source, mask_schedule, unmasked, extra) -> LaunchForm:
        return LaunchForm(stage=stage, model_preset=preset, dataset=dataset or "", teacher=teacher or "",
                          tokenizer=tokenizer or "", init_weights=init or "", max_steps=int(max_steps or 1),
                          batch_size=int(batch or 1), lr=float(lr or 0.0), seed=int(seed or 0), sfvr_enabled=bool(sfvr),
                          replace_prob=float(replace_prob), context_source=context_source, mask_schedule=mask_schedule,
                          unmasked_weight=float(unmasked), extra=extra or "")

    def _submit(self, label: str, form: LaunchForm, device: str, submit) -> tuple:
        launch = self.launches.start(label, form.stage, device, submit, refused=(InvalidConfigError, ValueError))
        watch = TrainWatch(launch_id=launch.id, note=launch_note(form))
        return self.status_text(watch), self.table_frame(), watch

    def on_launch(self, *values: Any) -> tuple:
        """Acknowledge at once; the launcher validates in the background (the table shows "validating…")."""
        (*form_values, device), slurm = self.executor.split(values)
        form = self._form(*form_values)
        overrides = form.overrides(self.ctx.workspace, self._model_path)
        device = (device or "cpu").strip()
        return self._submit(f"stage {form.stage} run", form, device, lambda: [
            self.jobs.submit(form.stage, None, overrides, device=device, slurm=slurm).id])

    def on_sweep(self, grid_text: str, *values: Any) -> tuple:
        (*form_values, device), slurm = self.executor.split(values)
        form = self._form(*form_values)
        grid = parse_grid(grid_text)
        if not grid:
            raise ValueError("sweep grid: add at least one line key=v1, v2, ...")
        overrides = form.overrides(self.ctx.workspace, self._model_path)
        device = (device or "cpu").strip()
        return self._submit(f"stage {form.stage} sweep over {', '.join(grid)}", form, device, lambda: list(
            self.jobs.submit_sweep(form.stage, None, grid, overrides, device=device, slurm=slurm).run_ids))

    def on_build_dataset(self, progress: gr.Progress = gr.Progress()) -> tuple:
        progress(0.05, desc="building the default dataset (64 px crops of the bundled photos)")
        built = build_workspace_default_dataset(self.ctx.workspace, train_crops=self.ctx.default_dataset_crops)
        return gr.Dropdown(choices=list_datasets(self.ctx.workspace), value=built.label), \
            f"Default dataset ready: **{built.label}** ({len(built.train_sources)} train shards)."

    def on_cancel(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose a run first")
        run = self.jobs.cancel(run_id)
        watch = TrainWatch(run_ids=(run.id,), selected=True, note="Cancel sent (the run checkpoints, then stops).")
        return self.status_text(watch), self.table_frame(), watch

    def on_resume(self, run_id: str | None) -> tuple:
        if not run_id:
            raise ValueError("run: choose a run first")
        run = self.jobs.resume(run_id)
        watch = TrainWatch(run_ids=(run.id,), selected=True, note="Resumed from its last checkpoint.")
        return self.status_text(watch), self.table_frame(), watch

    def on_log(self, run_id: str | None) -> str:
        return live_log(self.store, run_id) if run_id else ""

    def on_diff(self, a: str | None, b: str | None) -> pd.DataFrame:
        if not a or not b:
            return pd.DataFrame(columns=["key", "change", "A", "B"])
        rows = self.store.config_diff(a, b).rows()
        return pd.DataFrame([(k, c, "" if x is None else str(x), "" if y is None else str(y)) for k, c, x, y in rows],
                            columns=["key", "change", "A", "B"])

    def on_samples(self, run_ids: list[str] | None, step: float | None) -> tuple:
        """The eval samples of the overlaid runs at one step, side by side; the slider spans their eval steps."""
        runs = [self.store.get_run(r) for r in (run_ids or []) if r]
        items, steps = gallery_items(runs, step)
        if not steps:
            return [], gr.Slider(minimum=0, maximum=1, value=0, step=1, label="Eval step: no samples yet")
        return items, gr.Slider(**sample_slider(steps, step))

    def on_newest_samples(self, run_ids: list[str] | None) -> tuple:
        return self.on_samples(run_ids, None)

    def on_sweep_pick(self, sweep_id: str | None) -> tuple:
        if not sweep_id:
            return pd.DataFrame(), gr.Dropdown(choices=[]), gr.Dropdown(choices=[]), empty_plot("choose a sweep")
        sweep = self.store.get_sweep(sweep_id)
        table = sweep_table(self.store, sweep)
        fields = list(sweep.grid)
        metrics = [c for c in table.columns if c.endswith((" final", " best"))]
        x, y = fields[0], default_sweep_metric(metrics)
        # what the sweep is judged on next to what it swept, so both stay in view of a narrow table
        first = ["run", *fields, *([y] if y else []), *sorted(m for m in metrics if m.endswith(" final") and m != y)]
        table = table[first + [c for c in table.columns if c not in first]]
        return (table.drop(columns=["run_id"]), gr.Dropdown(choices=fields, value=x),
                gr.Dropdown(choices=metrics, value=y), sweep_plot(table, x, y or ""))

    def on_sweep_plot(self, sweep_id: str | None, swept: str | None, metric: str | None):
        if not sweep_id or not swept or not metric:
            return empty_plot("choose a sweep, a swept field and a metric")
        return sweep_plot(sweep_table(self.store, self.store.get_sweep(sweep_id)), swept, metric)

    def on_export_sweep(self, sweep_id: str | None) -> gr.File:
        if not sweep_id:
            raise ValueError("sweep: choose a sweep first")
        table = sweep_table(self.store, self.store.get_sweep(sweep_id))
        path = self.ctx.exports_dir / f"{sweep_id}.csv"
        table.to_csv(path, index=False)
        return gr.File(value=str(path), visible=True)

    def table_frame(self) -> pd.DataFrame:
        frame = self.jobs_frame()
        pending = self.launch_rows()
        return pd.concat([pd.DataFrame(pending, columns=JOB_COLUMNS), frame], ignore_index=True) if pending else frame

    def on_tick(self, known: tuple, known_samples: tuple, watch: TrainWatch, run_id: str | None,
                curve_runs: list[str] | None, keys: list[str] | None, eval_keys: list[str] | None,
                smoothing: float, diff_a: str | None, diff_b: str | None, sweep: str | None) -> tuple:
        """Refresh table, status, log and curves; run lists only when the set of runs changed; a launch that
        became runs selects them (log and overlay). Every list goes out with a value among its choices
        (:func:`refreshed`): a value the choices lack would fail the next tick's input check, every tick."""
        choices = self.run_choices()
        ids = tuple(r for _, r in choices)
        launch = self.launches.get(watch.launch_id) if watch.launch_id else None
        select = launch is not None and launch.state == SUBMITTED and not watch.selected and launch.run_ids
        if select:
            run_id, curve_runs = launch.run_ids[0], list(launch.run_ids)
            watch = TrainWatch(watch.launch_id, launch.run_ids, True, watch.note)
        if ids != tuple(known) or select:
            curve_runs = kept_value(choices, curve_runs, True, ids[:1])
            run_id = kept_value(choices, run_id, fallback=(curve_runs or [None])[0])
            updates = (gr.Dropdown(choices=choices, value=curve_runs), gr.Dropdown(choices=choices, value=run_id),
                       refreshed(choices, diff_a), refreshed(choices, diff_b),
                       refreshed(self.sweep_choices(), sweep))
        else:
            updates = (gr.skip(),) * 5
        train_keys, all_eval = split_keys(self.store.keys(curve_runs or None))  # of the runs shown from now on
        keys = kept_value(train_keys, keys, True, lambda found: [k for k in DEFAULT_KEYS if k in found][:1] or found[:1])
        eval_keys = kept_value(all_eval, eval_keys, True,
                               lambda found: [k for k in found if "psnr" in k or "acc" in k][:2] or found[:1])
        samples = self._new_samples(known_samples, curve_runs)
        # The watch goes back only when this tick changed it: a tick that started before a launch click finished
        # holds the old watch, and writing it back would drop the launch (its runs never get selected).
        return (ids, samples[0], watch if select else gr.skip(), self.status_text(watch), self.table_frame(),
                self.on_log(run_id), *updates,
                *samples[1:], gr.Dropdown(choices=train_keys, value=keys), gr.Dropdown(choices=all_eval, value=eval_keys),
                self.curves_plot(curve_runs, keys, smoothing), self.eval_plot(curve_runs, eval_keys, smoothing))

    def _new_samples(self, known: tuple, run_ids: list[str] | None) -> tuple:
        """(steps, gallery, slider): the newest eval samples once a run writes new ones, else unchanged."""
        runs = [self.store.get_run(r) for r in (run_ids or []) if r]
        steps = (tuple(r.id for r in runs), tuple(gallery_items(runs, None)[1]))
        if steps == tuple(known):
            return known, gr.skip(), gr.skip()
        return (steps, *self.on_samples(run_ids, None))

    def on_overlay(self, run_ids: list[str] | None) -> pd.DataFrame:
        return overlay_diff([self.store.get_run(r) for r in (run_ids or []) if r])

    def reload_lists_on(self, triggers: list) -> None:
        """Datasets, models and runs are read when the screen opens."""
        lists = [self.dataset, self.teacher, self.tokenizer, self.init, self.run, self.curve_runs, self.diff_a,
                 self.diff_b, self.sweep]
        gr.on(triggers, self.on_open, lists, [*lists, self.log], show_progress="hidden", api_visibility="private")

    def followed_run(self) -> str | None:
        """The run a screen that opens afresh (a reload mid-run) shows: the newest running run (a sweep's later
        points wait queued, with nothing to show yet), else the newest queued one, else the newest."""
        runs = self.runs()
        for status in ("running", "queued"):
            found = [r for r in runs if r.status == status]
            if found:
                return found[0].id
        return runs[0].id if runs else None

    def on_open(self, dataset: str | None, teacher: str | None, tokenizer: str | None, init: str | None,
                run_id: str | None, curve_runs: list[str] | None, diff_a: str | None, diff_b: str | None,
                sweep: str | None) -> tuple:
        """Re-read every list, keep what is still there, and follow the newest active run when none is picked."""
        datasets = list_datasets(self.ctx.workspace)
        runs = self.run_choices()
        followed = self.followed_run()
        run_id = kept_value(runs, run_id, fallback=followed)
        return (gr.Dropdown(choices=datasets, value=dataset or (datasets[0] if datasets else None)),
                gr.Dropdown(choices=self._model_choices("maskgit_vqgan"), value=teacher),
                gr.Dropdown(choices=self._model_choices("sftok"), value=tokenizer),
                gr.Dropdown(choices=[""] + self._model_choices("sftok"), value=init or ""),
                gr.Dropdown(choices=runs, value=run_id),
                refreshed(runs, curve_runs, True, [followed] if followed else []),
                refreshed(runs, diff_a), refreshed(runs, diff_b), refreshed(self.sweep_choices(), sweep),
                self.on_log(run_id))

    def _wire(self) -> None:
        form = [self.stage, self.preset, self.dataset, self.teacher, self.tokenizer, self.init, self.max_steps,
                self.batch, self.lr, self.seed, self.sfvr, self.replace_prob, self.context_source, self.mask_schedule,
                self.unmasked, self.extra, self.device, *self.executor.inputs]
        submitted = [self.status, self.table, self.watch]
        for event in (self.launch.click(user_errors(self.on_launch), form, submitted, api_name="train_launch"),
                      self.launch_sweep.click(user_errors(self.on_sweep), [self.grid, *form], submitted,
                                              api_name="train_sweep"),
                      self.cancel.click(user_errors(self.on_cancel), [self.run], submitted, api_name="train_cancel"),
                      self.resume.click(user_errors(self.on_resume), [self.run], submitted, api_name="train_resume")):
            keep_error_visible(event, self.status)
        for button in (self.launch, self.launch_sweep):
            button.click(self.save_form, list(self.remembered.values()), [self.saved_form], show_progress="hidden",
                         api_visibility="private")
        built = self.build_data.click(user_errors(self.on_build_dataset), None, [self.dataset, self.status],
                                      api_name="train_build_dataset", show_progress_on=[self.status])
        keep_error_visible(built, self.status)
        self.run.change(user_errors(self.on_log), [self.run], [self.log], api_name="train_log", show_progress="hidden")
        curve_inputs = [self.curve_runs, self.keys, self.smoothing]
        for i, widget in enumerate(curve_inputs):
            widget.change(user_errors(self.curves_plot), curve_inputs, [self.curves], show_progress="hidden",
                          api_name="train_curves" if i == 0 else False)
        gr.on([self.curve_runs.change, self.eval_keys.change], user_errors(self.eval_plot),
              [self.curve_runs, self.eval_keys, self.smoothing], [self.eval_curves], show_progress="hidden",
              api_name="train_eval_curves")
        self.curve_runs.change(user_errors(self.on_overlay), [self.curve_runs], [self.overlay_diff],
                               show_progress="hidden", api_name="train_overlay_diff")
        # A new overlay shows its newest samples: that event does not read the slider, whose value in the browser
        # may still belong to the old overlay (Gradio would refuse it against the new range). A slider move does.
        self.curve_runs.change(user_errors(self.on_newest_samples), [self.curve_runs], [self.samples, self.sample_step],
                               show_progress="hidden", api_visibility="private")
        self.sample_step.release(user_errors(self.on_samples), [self.curve_runs, self.sample_step],
                                 [self.samples, self.sample_step], show_progress="hidden", api_name="train_samples")
        self.sweep.change(user_errors(self.on_sweep_pick), [self.sweep],
                          [self.sweep_table, self.sweep_x, self.sweep_y, self.sweep_plot], api_name="train_sweep_table",
                          show_progress="hidden")
        gr.on([self.sweep_x.input, self.sweep_y.input], user_errors(self.on_sweep_plot),
              [self.sweep, self.sweep_x, self.sweep_y], [self.sweep_plot], show_progress="hidden",
              api_visibility="private")
        self.export_sweep.click(user_errors(self.on_export_sweep), [self.sweep], [self.sweep_file],
                                api_name="train_sweep_csv")
        self.diff_a.change(user_errors(self.on_diff), [self.diff_a, self.diff_b], [self.diff], api_name="train_diff")
        self.diff_b.change(user_errors(self.on_diff), [self.diff_a, self.diff_b], [self.diff], api_name=False)
        self.timer.tick(self.on_tick, [self.known_runs, self.known_samples, self.watch, self.run, self.curve_runs,
                                       self.keys, self.eval_keys, self.smoothing, self.diff_a, self.diff_b, self.sweep],
                        [self.known_runs, self.known_samples, self.watch, self.status, self.table, self.log,
                         self.curve_runs, self.run, self.diff_a, self.diff_b, self.sweep, self.samples,
                         self.sample_step, self.keys, self.eval_keys, self.curves, self.eval_curves],
                        # one tick at a time: a tick fired while the last is pending would send the lists' old
                        # values, which the pending tick's new choices may no longer hold
                        show_progress="hidden", api_name="train_refresh", trigger_mode="once")


def build(ctx: AppContext) -> TrainPage:
    return TrainPage(ctx)


__all__ = ["TrainPage", "build"]
