"""Writing results: JSON (dataclasses, numpy arrays), CSV tables and a self-contained HTML report.

The HTML embeds plotly.js once, inline, so a report opens offline.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Dataclasses -> dicts, numpy -> lists/scalars, NaN/inf -> None (JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "detach"):  # torch tensors
        return to_jsonable(obj.detach().cpu().numpy())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=1) + "\n", encoding="utf-8")
    return path


def rows_of(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass rows (or mappings) as plain dicts, for CSV and HTML tables."""
    return [to_jsonable(i) if dataclasses.is_dataclass(i) else dict(i) for i in items]


def write_csv(path: str | os.PathLike, rows: Sequence[Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = rows_of(rows)
    columns = list(dict.fromkeys(k for r in table for k in r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in table:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    return path


@dataclass
class Section:
    title: str
    figures: list[Any] = field(default_factory=list)  # plotly figures
    table: Sequence[Any] = ()  # dataclass rows or mappings
    text: str = ""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table_html(rows: Sequence[Any]) -> str:
    table = rows_of(rows)
    if not table:
        return ""
    columns = list(dict.fromkeys(k for r in table for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in table)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html_report(path: str | os.PathLike, title: str, sections: Sequence[Section]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:24px;max-width:1400px}table{border-collapse:collapse;"
             "font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "p{white-space:pre-wrap}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    plotly_js_done = False
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for fig in section.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=not plotly_js_done))
            plotly_js_done = True
        parts.append(_table_html(section.table))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
