"""Evaluation results shaped like the paper's table (model x decoding steps -> rFID, IS, PSNR, SSIM, LPIPS, usage),
read from the store's ``eval/<metric>@<steps>`` rows, with the reported numbers as a separate block; CSV and
LaTeX exports; rFID against steps per model."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from workbench.runs.records import RunRecord
from workbench.runs.store import Store
from workbench.services.reported_results import REFERENCE_PROTOCOL, REPORTED

KEY = re.compile(r"^eval/(?P<name>[a-z_]+)@(?P<steps>\d+)$")  # an explicit temperature (``@tT``) is not a table row
PER_STEP = {"rfid": "rFID", "is": "IS", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
MEASURED_COLUMNS = ["model", "steps", "images", "rFID", "IS", "PSNR", "SSIM", "LPIPS", "usage %"]
REPORTED_COLUMNS = ["model", "steps", "images", "rFID", "gFID", "source"]
EXPORT_COLUMNS = ["kind", "model", "steps", "images", "rFID", "gFID", "IS", "PSNR", "SSIM", "LPIPS", "usage %", "source"]
DIGITS = {"rFID": 2, "gFID": 2, "IS": 2, "PSNR": 2, "SSIM": 3, "LPIPS": 3, "usage %": 1}
MEASURED, REPORTED_KIND = "measured", f"reported ({REFERENCE_PROTOCOL})"


def model_label(run: RunRecord) -> str:
    """What a run evaluated, as the table names it (the model choice recorded at launch)."""
    return str((run.config or {}).get("evaluate", {}).get("label") or run.name or run.id)


def measured_table(store: Store, runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run (model) x decoding step count, ordered by model then steps; empty cells where a metric is
    absent (LPIPS without its weights). Only runs that logged results appear."""
    if not runs:
        return pd.DataFrame(columns=MEASURED_COLUMNS)
    latest = store.latest([r.id for r in runs])
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        mine = latest[latest["run_id"] == run.id]
        values = dict(zip(mine["key"], mine["value"]))
        usage = values.get("eval/codebook_used")
        images = values.get("eval/num_images")
        for key, value in values.items():
            match = KEY.match(str(key))
            if not match or match["name"] not in PER_STEP:
                continue
            row = rows.setdefault((run.id, int(match["steps"])), {
                "model": model_label(run), "steps": int(match["steps"]),
                "images": None if images is None else int(images),
                "usage %": None if usage is None else round(100.0 * usage, DIGITS["usage %"])})
            column = PER_STEP[match["name"]]
            row[column] = round(float(value), DIGITS[column])
    frame = pd.DataFrame(list(rows.values()), columns=MEASURED_COLUMNS)
    return frame.sort_values(["model", "steps"], kind="stable").reset_index(drop=True)


def reported_table() -> pd.DataFrame:
    """The papers' numbers, one row each, with their sources: reference rows, never measured ones."""
    rows = [{"model": r.model, "steps": r.steps, "images": 50_000, "rFID": r.value if r.metric == "rfid" else None,
             "gFID": r.value if r.metric == "gfid" else None, "source": r.source} for r in REPORTED]
    return pd.DataFrame(rows, columns=REPORTED_COLUMNS)


def export_frame(measured: pd.DataFrame, reported: pd.DataFrame) -> pd.DataFrame:
    """Both blocks in one frame, told apart by ``kind`` (measured rows first)."""
    parts = [measured.assign(kind=MEASURED, source="this workspace"), reported.assign(kind=REPORTED_KIND)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=EXPORT_COLUMNS)
    return pd.concat(parts, ignore_index=True).reindex(columns=EXPORT_COLUMNS)


def write_csv(measured: pd.DataFrame, reported: pd.DataFrame, path: Path) -> Path:
    frame = export_frame(measured, reported)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        for row in frame.itertuples(index=False):
            writer.writerow(["" if _missing(v) else _plain(v) for v in row])
    return path


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_table(measured: pd.DataFrame, reported: pd.DataFrame) -> str:
    """A booktabs ``tabular``: the measured rows, then a labelled block of reported rows (sources as comments)."""
    columns = [c for c in EXPORT_COLUMNS if c not in ("kind", "source")]
    header = " & ".join(latex_escape(c) for c in columns) + r" \\"
    lines = [r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}", r"\toprule", header, r"\midrule"]

    def body(frame: pd.DataFrame) -> list[str]:
        return [" & ".join(_latex_cell(row.get(c), c) for c in columns) + r" \\"
                for row in frame.reindex(columns=columns).to_dict("records")]

    lines += body(measured) or [rf"\multicolumn{{{len(columns)}}}{{l}}{{\emph{{no measured results}}}} \\"]
    if not reported.empty:
        lines += [r"\midrule", rf"\multicolumn{{{len(columns)}}}{{l}}{{\emph{{Reported ({latex_escape(REFERENCE_PROTOCOL)}; "
                               r"not measured here)}} \\"]
        lines += body(reported)
        lines += [f"% {latex_escape(m)}: {latex_escape(s)}" for m, s in zip(reported["model"], reported["source"])]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_latex(measured: pd.DataFrame, reported: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(latex_table(measured, reported), encoding="utf-8")
    return path


def rfid_figure(measured: pd.DataFrame) -> go.Figure:
    """rFID against decoding steps, one line per model (measured rows only)."""
    fig = go.Figure()
    for model, rows in measured.dropna(subset=["rFID"]).groupby("model", sort=True):
        rows = rows.sort_values("steps")
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["rFID"], mode="lines+markers", name=str(model)))
    fig.update_layout(title="rFID against decoding steps (measured)", xaxis_title="decoding steps",
                      yaxis_title="rFID (lower is better)", legend_title="model", height=360,
                      margin=dict(l=60, r=20, t=50, b=50))
    fig.update_xaxes(type="log", dtick=0.30102999566, tickformat="d")  # 1, 2, 4, 8 evenly spaced
    return fig


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _latex_cell(value: Any, column: str) -> str:
    if _missing(value):
        return "--"
    if column in DIGITS:
        return f"{float(value):.{DIGITS[column]}f}"
    if column in ("steps", "images"):
        return f"{int(value):,}".replace(",", "{,}")
    return latex_escape(value)
