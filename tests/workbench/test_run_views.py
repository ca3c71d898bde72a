"""The Train screen's run views and live log, as data (no server)."""
from __future__ import annotations

import json

import pandas as pd

from workbench.services.run_log import split_at_start
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


def test_printed_lines_after_the_start_go_after_the_metrics():
    printed = ["ignored (experiment.name)", "started stage 2 on 1 process(es): batch 8", "done: step 20, model in m"]
    assert split_at_start(printed) == (printed[:2], printed[2:])
    assert split_at_start(["Traceback (most recent call last):"]) == (["Traceback (most recent call last):"], [])


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
