"""Summary tables (a row per measure, units in their own column) and tick labels of small numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.ui.components.plots import number_axis, training_curves
from workbench.ui.components.tables import Measure, measures_frame

MEASURES = (Measure("mi", "LOO MI", "bits/slot"), Measure("used", "used", "codes"), Measure("acc", "accuracy", "", 2))


def test_measures_frame_puts_models_side_by_side_with_units_apart():
    rows = [{"model": "A: default", "mi": 0.123456, "used": np.int64(812), "acc": float("nan")},
            {"model": "B: other", "mi": -0.5, "used": 3, "acc": 0.987}]
    frame = measures_frame(rows, MEASURES, "model")
    assert list(frame.columns) == ["measure", "unit", "A: default", "B: other"]
    assert frame["measure"].tolist() == ["LOO MI", "used", "accuracy"]
    assert frame["unit"].tolist() == ["bits/slot", "codes", ""]
    assert frame["A: default"].tolist() == [0.1235, 812, None]  # 4 digits, ints stay ints, NaN is an empty cell
    assert isinstance(frame["A: default"][1], int)
    assert frame["B: other"].tolist() == [-0.5, 3, 0.99]


def test_measures_frame_before_anything_ran_lists_the_measures():
    frame = measures_frame([], MEASURES, "model")
    assert list(frame.columns) == ["measure", "unit"] and len(frame) == 3


def test_small_values_get_exponent_ticks():
    assert number_axis([1e-4, 3e-4, 2e-4]) == {"tickformat": "~e"}  # not plotly's "100μ ... 300μ"
    assert number_axis([0.0, 5e-5, float("nan")]) == {"tickformat": "~e"}  # a warmup from 0 still counts
    assert number_axis([0.5, 19.3]) == {} and number_axis([]) == {} and number_axis([0.0]) == {}


def test_learning_rate_panel_reads_in_exponents():
    frame = pd.DataFrame({"run_name": ["r"] * 4, "key": ["lr", "lr", "train/loss", "train/loss"],
                          "step": [1, 2, 1, 2], "value": [1e-4, 3e-4, 5.2, 4.9]})
    layout = training_curves(frame, ["lr", "train/loss"])["layout"]
    assert layout["yaxis"]["tickformat"] == "~e" and "tickformat" not in layout["yaxis2"]
