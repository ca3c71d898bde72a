"""The Train screen's run views and live log, as data (no server)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workbench.ui.components.run_views import sweep_plot


def _layout_and_x(table: pd.DataFrame) -> tuple[dict, list]:
    figure = json.loads(sweep_plot(table, "optim.lr", "eval/psnr").plot)
    return figure["layout"]["xaxis"], figure["data"][0]["x"]


def test_sweep_plot_axis_follows_the_swept_values():
    one = pd.DataFrame({"run": ["a"], "optim.lr": [1e-4], "eval/psnr": [12.0]})
    axis, x = _layout_and_x(one)
    assert axis["type"] == "category" and x == ["0.0001"]  # a single number: a label, not a -1..1 axis
    two = pd.DataFrame({"run": ["b", "a"], "optim.lr": [3e-4, 1e-4], "eval/psnr": [13.0, 12.0]})
    axis, x = _layout_and_x(two)
    assert axis["type"] == "linear" and x == [1e-4, 3e-4]  # sorted by the swept value
    assert axis["tickformat"] == "~e"  # learning rates read 1e-4, 3e-4 (plotly's SI suffix said "100μ")
    wide = pd.DataFrame({"run": ["a", "b"], "optim.lr": [1e-5, 1e-3], "eval/psnr": [11.0, 12.0]})
    assert _layout_and_x(wide)[0]["type"] == "log"  # two decades apart
    words = pd.DataFrame({"run": ["a", "b"], "optim.lr": ["cosine", "linear"], "eval/psnr": [11.0, 12.0]})
    assert _layout_and_x(words)[0]["type"] == "category"


def test_sparse_curves_show_their_points():
    """A run with one eval so far must draw something: a line through one point is invisible."""
    from workbench.ui.components.plots import SPARSE_POINTS, training_curves

    dense = SPARSE_POINTS + 1
    frame = pd.DataFrame({"run_name": ["a"] + ["b"] * dense, "key": ["eval/psnr@8"] * (1 + dense),
                          "step": [10] + list(range(dense)), "value": [12.5] + [11.0] * dense})
    traces = {t["name"]: t for t in training_curves(frame, ["eval/psnr@8"], "Eval metrics")["data"]}
    assert traces["a"]["mode"] == "lines+markers" and list(traces["a"]["y"]) == [12.5]
    assert traces["b"]["mode"] == "lines" and len(traces["b"]["x"]) == dense
    assert traces["a"]["marker"]["color"] == traces["a"]["line"]["color"] != traces["b"]["line"]["color"]


def test_cancel_and_resume_read_in_order_in_the_live_log():
    """Printed lines take their events' times; the signal line and events nobody printed land where they happened."""
    from workbench.services.run_log import place_printed

    started = "started stage teacher on 1 process(es): batch 8"
    events = [(10.0, "info", started), (20.0, "warning", "stopped at step 24; checkpoint saved"),
              (30.0, "info", "resumed from checkpoint-24 at step 24"), (31.0, "info", started),
              (40.0, "info", "finished at step 100; EMA weights in m")]
    printed = [started, "signal 15: saving a checkpoint, then stopping", started, "done: step 100, model in m"]
    placed = place_printed(printed, events)
    walls = {line: wall for wall, _, line in placed}
    assert [w for w, _, line in placed if line == started] == [10.0, 31.0]  # each session's start at its own time
    assert 10.0 < walls["signal 15: saving a checkpoint, then stopping"] < 20.0  # before the stop it caused
    assert 31.0 < walls["done: step 100, model in m"] < 40.0
    crash = place_printed([started, "Traceback (most recent call last):"], events[:1])
    assert crash[1][0] == float("inf")  # no event after it: shown last, after every metric line
    assert place_printed(["[note] odd shards"], [(5.0, "warning", "odd shards")]) == [(5.0, 0, "[note] odd shards")]


def test_live_log_shows_stop_and_resume_between_the_sessions(tmp_path):
    """A cancelled and resumed run, from its real files through the DuckDB store: one timeline in order."""
    from trainers.sink import EVENTS_FILE, METRICS_FILE
    from workbench.runs.records import RunRecord
    from workbench.runs.rundir import LOG_FILE
    from workbench.runs.store import Store
    from workbench.services.run_log import live_log

    store = Store(tmp_path)
    try:
        run = store.create_run(RunRecord(id="r", run_dir=str(store.run_dir_for("r")), name="r", stage="teacher"))
        folder = Path(run.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        started = "started stage teacher on 1 process(es): batch 8"
        events = [(100.0, "info", started), (124.5, "warning", "stopped at step 24; checkpoint saved"),
                  (200.0, "info", "resumed from checkpoint-24 at step 24"), (201.0, "info", started)]
        (folder / EVENTS_FILE).write_text("".join(json.dumps({"wall": w, "level": lv, "message": m}) + "\n"
                                                  for w, lv, m in events))
        metrics = [(step, 100.0 + step, 5.0 - step / 100) for step in (10, 20)]
        metrics += [(step, 201.0 + step - 24, 4.0) for step in (30, 40)]
        (folder / METRICS_FILE).write_text("".join(json.dumps({"step": st, "wall": w, "metrics": {"train/loss": v}})
                                                   + "\n" for st, w, v in metrics))
        (folder / LOG_FILE).write_text(f"{started}\n\nsignal 15: saving a checkpoint, then stopping\n{started}\n")
        store.ingest(["r"])
        lines = live_log(store, "r").splitlines()
        order = [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in
                 (started, "step 10:", "step 20:", "signal 15", "[note] stopped at step 24", "resumed from",
                  "step 30:", "step 40:")]
        assert order == sorted(order), lines
        assert sum(line == started for line in lines) == 2 and lines.index(started, order[0] + 1) > order[5]
    finally:
        store.close()


def test_refused_launches_leave_the_jobs_table_after_a_while():
    from workbench.services.launches import INVALID, SUBMITTED, Launches

    launches = Launches(refused_shown_s=60)
    try:
        refused = launches.start("stage 1", "1", "cpu", lambda: (_ for _ in ()).throw(ValueError("max_steps: bad")))
        ok = launches.start("stage 2", "2", "cpu", lambda: ["run-1"])
        assert launches.wait(refused.id).state == INVALID and launches.wait(ok.id).state == SUBMITTED
        assert launches.get(refused.id).error == "max_steps: bad"
        assert [x.id for x in launches.unsettled()] == [refused.id]  # shown with its reason, the submitted one not
        assert launches.unsettled(now=refused.created + 61) == []  # a minute later it is gone from the table
    finally:
        launches.close()


def test_refreshed_lists_never_send_a_value_their_choices_lack():
    """The Train screen froze when a tick sent keys ['train/loss'] with no choices (the new run had no metrics yet):
    every later tick failed Gradio's input check. Values are kept only where the choices hold them."""
    from workbench.ui.components.choices import kept_value, refreshed

    assert kept_value([], ["train/loss"], multiselect=True) == []
    assert kept_value(["loss", "train/loss"], ["train/loss", "gone"], multiselect=True) == ["train/loss"]
    assert kept_value(["a", "b"], ["gone"], multiselect=True, fallback=lambda found: found[:1]) == ["a"]
    assert kept_value([("run one", "r1"), ("run two", "r2")], "r2") == "r2"
    assert kept_value([("run one", "r1")], "r2", fallback="r1") == "r1"
    assert kept_value([("run one", "r1")], "r2", fallback="missing") is None
    update = refreshed([("run one", "r1")], "r9").get_config()
    assert update["value"] is None and [c[1] for c in update["choices"]] == ["r1"]


def test_sample_slider_keeps_its_minimum_at_zero_and_counts_right():
    from workbench.ui.components.run_views import sample_slider

    one = sample_slider([25], None)
    assert one["minimum"] == 0 and one["value"] == 25 and one["label"] == "Eval step (1 evaluation: step 25)"
    many = sample_slider([25, 50, 75, 100], 60)
    assert (many["minimum"], many["maximum"], many["step"], many["value"]) == (0, 100, 25, 50)
    assert many["label"] == "Eval step (4 evaluations: steps 25..100)"
    assert sample_slider([30, 60, 100], None)["step"] == 10  # every eval step is reachable


def test_stage_2_without_initial_weights_is_said_at_launch():
    from workbench.services.training_form import LaunchForm, launch_note

    assert "random weights" in launch_note(LaunchForm(stage="2")) and "stage 1" in launch_note(LaunchForm(stage="2"))
    assert "stage 2 model" in launch_note(LaunchForm(stage="3"))
    assert launch_note(LaunchForm(stage="2", init_weights="runs/s1/model")) == ""
    assert launch_note(LaunchForm(stage="2", extra="init_weights=runs/s1/model")) == ""
    assert launch_note(LaunchForm(stage="1")) == launch_note(LaunchForm(stage="teacher")) == ""


def test_sweep_plot_defaults_to_the_metric_a_sweep_optimises_and_samples_name_their_columns():
    from workbench.runs.records import RunRecord
    from workbench.services.run_results import default_sweep_metric, sample_columns

    columns = ["codebook_used final", "codebook_used best", "psnr@1 final", "psnr@8 final", "psnr@8 best"]
    assert default_sweep_metric(columns) == "psnr@8 final"
    assert default_sweep_metric(["codebook_used final", "rfid@8 final", "psnr@8 final"]) == "rfid@8 final"
    assert default_sweep_metric(["codebook_used final"]) == "codebook_used final"
    assert default_sweep_metric([]) is None
    run = RunRecord(id="r", run_dir="x", stage="2", config={"eval_num_steps": [8, 1, 4]})
    assert sample_columns(run) == "input | 1-step decode | 8-step decode"
    assert sample_columns(RunRecord(id="t", run_dir="x", stage="teacher")) == "input | reconstruction"
