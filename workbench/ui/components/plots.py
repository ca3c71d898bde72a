"""Plotly figures as plain dicts, sent to ``gr.Plot`` without building ``go.Figure`` objects.

``go.Figure`` validation costs ~10 ms per figure, a third of the scrubber's budget; the per-step
curve is therefore built once per decode as a dict and only its step marker changes per move.
"""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
from gradio.components.plot import PlotData

from workbench.services.traces import StepTrace

COLORS = ("#3b6ea8", "#e8912d", "#4f9d69", "#b5477a", "#7a6bb0", "#8c8c8c")
BASE_LAYOUT: dict[str, Any] = {
    "template": "plotly_white", "height": 280, "margin": {"l": 55, "r": 55, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0}, "hovermode": "x unified",
}


def as_plot(figure: dict[str, Any]) -> PlotData:
    """A figure dict ({"data": [...], "layout": {...}}) in the form ``gr.Plot`` sends to the browser."""
    return PlotData(type="plotly", plot=json.dumps(figure, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def step_curve(trace: StepTrace, title: str = "") -> dict[str, Any]:
    """Per-step metrics against step number (1-based); metrics in the first one's unit share its axis, the others
    a right-hand one. The title sits above the legend (its own margin), so neither covers the other or the curves."""
    steps = list(range(1, trace.num_steps + 1))
    data, layout = [], copy.deepcopy(BASE_LAYOUT)
    if title:
        layout["title"] = {"text": title, "x": 0, "xanchor": "left", "y": 0.97, "yanchor": "top", "font": {"size": 14}}
        layout["margin"] = {**layout["margin"], "t": 80}
    layout["xaxis"] = {"title": {"text": "step"}, "dtick": 1 if trace.num_steps <= 16 else 4, "range": [0.5, trace.num_steps + 0.5]}
    names = list(trace.metrics)
    left = [n for n in names if n == names[0] or (_unit(n) and _unit(n) == _unit(names[0]))]
    for i, (name, values) in enumerate(trace.metrics.items()):
        on_left = name in left
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": steps,
                     "y": [round(float(v), 4) for v in values], "yaxis": "y" if on_left else "y2",
                     "line": {"color": COLORS[i % len(COLORS)], "width": 2, "dash": "solid" if i == 0 or not on_left
                              else "dash"}, "marker": {"size": 6}})
        key = "yaxis" if on_left else "yaxis2"
        if key not in layout:  # the first metric on each axis names it
            layout[key] = {"title": {"text": name if on_left or len(names) - len(left) == 1 else "other metrics"}}
            if not on_left:
                layout[key].update({"overlaying": "y", "side": "right", "showgrid": False})
    return {"data": data, "layout": layout}


def _unit(name: str) -> str:
    """The unit in a metric's name, "PSNR (dB)" -> "dB"; empty when it names none."""
    return name[name.rfind("(") + 1:-1] if name.endswith(")") and "(" in name else ""


def number_axis(values: Any) -> dict[str, Any]:
    """Tick labels for an axis of these values: small ones (learning rates) in exponent notation, 1e-4 and 3e-4,
    where plotly's default SI suffixes read "100μ" and "300μ"; others keep plotly's default."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    return {"tickformat": "~e"} if finite.size and finite.max() < 1e-2 else {}


SPARSE_POINTS = 40  # a series this short (eval metrics, a run's first logs) shows its points, not only a line


def curve_mode(points: int) -> str:
    """Lines for dense logs; markers too for sparse ones: a line through one point draws nothing, and a few eval
    points joined by straight lines hide where the measurements are."""
    return "lines+markers" if points <= SPARSE_POINTS else "lines"


def training_curves(frame: Any, keys: list[str], title: str = "") -> dict[str, Any]:
    """Curves in long format (``run_name, key, step, value``): one panel per key, one colour per run.

    ``uirevision`` is constant, so zoom and hidden traces survive the timer's refreshes.
    """
    keys = list(keys) or ["(no metric selected)"]
    n = len(keys)
    gap = 0.06 if n > 1 else 0.0
    height = (1.0 - gap * (n - 1)) / n
    layout: dict[str, Any] = {**copy.deepcopy(BASE_LAYOUT), "height": max(280, 230 * n), "uirevision": "train-curves",
                              "hovermode": "closest",
                              "title": {"text": title, "x": 0, "xanchor": "left", "y": 0.99, "yanchor": "top"} if title else None,
                              "margin": {"l": 60, "r": 20, "t": 90 if title else 50, "b": 40}}
    data: list[dict[str, Any]] = []
    runs = list(dict.fromkeys(frame["run_name"])) if len(frame) else []
    for i, key in enumerate(keys):
        axis = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        values = frame["value"][frame["key"] == key] if len(frame) else []
        layout[f"yaxis{axis}"] = {"domain": [max(0.0, top - height), top], "title": {"text": key}, "anchor": f"x{axis}",
                                  **number_axis(values)}
        layout[f"xaxis{axis}"] = {"anchor": f"y{axis}", "matches": "x" if i else None,
                                  "title": {"text": "step"} if i == n - 1 else None}
        for j, run in enumerate(runs):
            rows = frame[(frame["key"] == key) & (frame["run_name"] == run)]
            color = COLORS[j % len(COLORS)]
            data.append({"type": "scatter", "mode": curve_mode(len(rows)), "name": run, "legendgroup": run,
                         "showlegend": i == 0, "x": rows["step"].to_numpy(), "y": rows["value"].to_numpy(),
                         "xaxis": f"x{axis}", "yaxis": f"y{axis}", "line": {"color": color, "width": 1.6},
                         "marker": {"color": color, "size": 6}})
    return {"data": data, "layout": layout}
