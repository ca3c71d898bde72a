"""Grid sweeps as data: the points of a grid over dotted config fields, and their CLI overrides."""
from __future__ import annotations

import itertools
import json
from typing import Any, Mapping, Sequence


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{"optim.lr": [1e-4, 3e-4], "max_steps": [100]}`` as a list of points,
    the last field varying fastest (like nested loops written in the grid's order)."""
    if not grid:
        raise ValueError("a sweep grid needs at least one field")
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"sweep field {key!r} needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def format_override(key: str, value: Any) -> str:
    """``key=value`` as ``launch_training.py`` reads it (values are parsed as YAML there)."""
    if isinstance(value, str):
        return f"{key}={value}"
    if isinstance(value, float):
        return f"{key}={_yaml_float(value)}"
    return f"{key}={json.dumps(value)}"


def _yaml_float(value: float) -> str:
    """A float spelling YAML 1.1 (PyYAML) reads back as a float: ``3e-05`` is a string there,
    ``3.0e-05`` is not."""
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exponent}"
    return text


def point_overrides(point: Mapping[str, Any]) -> list[str]:
    return [format_override(k, v) for k, v in point.items()]
