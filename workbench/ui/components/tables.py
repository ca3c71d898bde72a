"""Summary tables with one row per measure and one column per thing measured (a model, a codebook).

The screens compare one or two things on a dozen measures. As columns, a dozen measures with their units
in the headers squeeze each header into a few letters per line ("utilisa tion"); as rows, every measure
stays readable at any width, its unit sits in a column of its own, and the models sit side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

MEASURE, UNIT = "measure", "unit"


@dataclass(frozen=True)
class Measure:
    key: str  # the key in a report's summary row
    name: str  # what the table calls it
    unit: str = ""
    digits: int = 4


def _cell(value: Any, digits: int) -> Any:
    """A number rounded for display, ints kept as ints; NaN / None as an empty cell (None)."""
    if value is None:
        return None
    if isinstance(value, (bool, int)) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return int(value)
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def measures_frame(rows: Sequence[Mapping[str, Any]], measures: Sequence[Measure], label_key: str) -> pd.DataFrame:
    """Columns ``measure``, ``unit``, then one per row of ``rows`` headed by its ``label_key``; with no rows
    the table still lists what will be measured."""
    frame = pd.DataFrame({MEASURE: [m.name for m in measures], UNIT: [m.unit for m in measures]})
    for row in rows:
        frame[str(row[label_key])] = pd.Series([_cell(row.get(m.key), m.digits) for m in measures], dtype=object)
    return frame


__all__ = ["MEASURE", "Measure", "UNIT", "measures_frame"]
