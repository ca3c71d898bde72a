"""The training runs as the card reports them: steps, threads and wall time per run, and in-training curves."""
from __future__ import annotations

import json
from pathlib import Path

from train_default_model import ADOPTED, LAUNCHES

FLAT_DB = 0.3  # a curve that gains less than this over the second half of a run reads as flat


def metric_rows(runs: Path, name: str) -> list[dict]:
    """The rows of run ``name``'s metric log (``metrics.jsonl``), in the order they were written."""
    return [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_minutes(runs: Path, name: str, idle_gap_s: float = 300.0) -> tuple[int, float]:
    """(steps, active wall minutes) of a run from its metric log; pauses between two log rows longer than
    ``idle_gap_s`` (a run stopped and resumed later) are not counted."""
    rows = metric_rows(runs, name)
    walls = sorted(r["wall"] for r in rows)
    active = sum(b - a for a, b in zip(walls, walls[1:]) if b - a < idle_gap_s)
    return max(r["step"] for r in rows), active / 60


def run_names(runs: Path) -> list[str]:
    """Every run in ``runs`` that logged metrics, sorted: the rows of the card's run table."""
    return sorted(p.parent.name for p in runs.glob("*/metrics.jsonl"))


def run_threads(runs: Path, name: str) -> str:
    """The torch threads each start of a run had (the chain gives a run that starts alone every core)."""
    path = runs / name / LAUNCHES
    counts = [json.loads(line)["threads"] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return " then ".join(str(n) for n in dict.fromkeys(counts)) or "1"


def timing_rows(runs: Path, timing: dict[str, tuple[int, float]]) -> str:
    """The run table from ``{run: (steps, active wall minutes)}`` plus threads; an adopted model says where it came from."""
    rows = "".join(f"| {name} | {steps} | {run_threads(runs, name)} | {mins:.1f} |\n"
                   for name, (steps, mins) in timing.items())
    for path in sorted(runs.glob(f"*/{ADOPTED}")):
        record = json.loads(path.read_text())
        rows += (f"| {path.parent.name} | {record['steps']} | - | not trained here: `{record['source']}` as shipped "
                 f"(trained on `{record['photos']}` at commit {str(record['git_commit'])[:7]}; sha256 "
                 f"{record['sha256'][:12]}) |\n")
    return rows


def eval_curve(runs: Path, name: str, key: str = "eval/psnr@8") -> list[tuple[int, float]]:
    """(step, value) of a run's in-training held-out evaluations."""
    return [(r["step"], r["metrics"][key]) for r in metric_rows(runs, name) if key in r["metrics"]]


def curve_shape(runs: Path, name: str) -> str:
    """Whether a run's in-training held-out PSNR@8 still rose over the second half of the run."""
    curve = eval_curve(runs, name)
    middle = min(curve, key=lambda point: abs(point[0] - curve[-1][0] / 2))
    gain = curve[-1][1] - middle[1]
    return ("flat from the middle of the run" if abs(gain) < FLAT_DB else
            f"{'still rising' if gain > 0 else 'falling'} over the second half ({gain:+.2f} dB)")


def curve_text(runs: Path, name: str) -> str:
    """A run's in-training held-out PSNR@8 point by point, so the reader sees the curve's shape, not just its end."""
    return ", ".join(f"{v:.2f} (step {s})" for s, v in eval_curve(runs, name))


def stage3_losses(cfg: dict) -> str:
    """The losses stage 3 trained on, from its config (the PatchGAN term only when its weight is set)."""
    if float(cfg.get("gan_weight", 0)) > 0:
        return f"L2 + a PatchGAN loss (weight {cfg['gan_weight']}, from step {cfg.get('disc_start', 0)})"
    return "L2 only (the PatchGAN term is off, see below)"


def code_ce_note(stage3: dict) -> str:
    """Why stage 3 also learns the teacher's codes, said only when its config turns that term on."""
    weight = float(stage3.get("code_ce_weight", 0))
    if weight <= 0:
        return ""
    return (f", plus the proxy-code cross-entropy against the teacher's codes (weight {weight}; not in the paper): "
            "L2 alone turns the decoder's logits into mixing weights for the soft render and the Information screen "
            "then measures nothing about codes (see Reading the numbers)")
