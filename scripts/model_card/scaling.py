"""The card's scaling study: how stage 1 of the recipe scales with steps and with distinct photos, in a table and
in words (rates per doubling, a single run's spread, how far each lever is from the tokens goal).

The numbers come from ``scripts/measure_default_scaling.py`` (``scaling.json``, shipped beside the card).
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass

from .formatting import fmt, with_ci
from .sources import ASSETS

TOKENS_GOAL_BITS = 1.5  # issue 15: CE of the codes given the tokens at least this far below their marginal


def saved_scaling() -> dict | None:
    """The scaling measurement shipped beside the card, if it was made."""
    path = ASSETS / "default" / "scaling.json"
    return json.loads(path.read_text()) if path.is_file() else None


def doubling_rates(points: list[tuple[int, float]]) -> list[tuple[int, int, float]]:
    """(from, to, change per doubling) between neighbouring (size, value) points, sizes ascending: how fast a
    measure grows with steps or photos, interval by interval, so a flattening curve shows as falling rates."""
    points = sorted(points)
    return [(a, b, (vb - va) / math.log2(b / a)) for (a, va), (b, vb) in zip(points, points[1:])]


def rates_text(rates: list[tuple[int, int, float]], unit: str) -> str:
    """'+0.30 bits/slot from 800 to 2000 and +0.11 from 2000 to 5000': the unit once, after the first rate."""
    return " and ".join(f"{rate:+.2f}{' ' + unit if i == 0 else ''} from {a} to {b}" for i, (a, b, rate) in enumerate(rates))


def doublings_needed(points: list[tuple[int, float]], goal: float) -> float | None:
    """Doublings beyond the largest point that reach ``goal`` at the last interval's rate (None: not rising)."""
    rate = doubling_rates(points)[-1][2]
    last = max(points)[1]
    return None if rate <= 0 else max(0.0, (goal - last) / rate)


def held_out_points(runs: list[dict], axis: str, measure: str) -> list[tuple[int, float]]:
    """(steps or photos, held-out value) per run; PSNR is stored with its interval, the bits as a number."""
    values = [r["held_out"][measure] for r in runs]
    return [(r[axis], v["mean"] if isinstance(v, dict) else v) for r, v in zip(runs, values)]


@dataclass(frozen=True)
class ScalingAxes:
    """The scaling runs along their two levers (repeats left out: they only give a single run's spread)."""

    full: int  # photos of the step runs: the photo count trained at the most step budgets
    budget: int  # steps of the photo runs: the budget trained on the most photo counts
    by_steps: list[dict]  # ``full`` photos, ascending steps
    by_photos: list[dict]  # ``budget`` steps, ascending photos
    photo_series: dict[int, list[dict]]  # every budget trained on two or more photo counts -> its runs, ascending photos

    @classmethod
    def of(cls, runs: dict[str, dict]) -> "ScalingAxes":
        """The axes of a study's ``runs`` (``scaling.json``), found from the runs themselves, not from the plan."""
        first = [r for r in runs.values() if "repeat_of" not in r]

        def widest(key: str, other: str) -> int:  # the value of ``key`` that the most values of ``other`` share
            values = sorted({r[key] for r in first})
            return max(values, key=lambda v: (len({r[other] for r in first if r[key] == v}), v))

        def at(steps: int) -> list[dict]:
            return sorted((r for r in first if r["steps"] == steps), key=lambda r: r["photos"])

        full, budget = widest("photos", "steps"), widest("steps", "photos")
        series = {steps: runs_at for steps in sorted({r["steps"] for r in first}) if len(runs_at := at(steps)) > 1}
        return cls(full, budget, sorted((r for r in first if r["photos"] == full), key=lambda r: r["steps"]),
                   at(budget), series)


def repeat_moves(runs: dict[str, dict]) -> dict[str, tuple[dict, float, float]]:
    """Per repeat run: (the run, |held-out tokens tell moved|, |held-out PSNR@8 moved|) against the run it repeats."""
    out = {}
    for name, r in runs.items():
        if "repeat_of" in r:
            twin = runs[r["repeat_of"]]
            out[name] = (r, abs(r["held_out"]["tokens_bits_per_slot"] - twin["held_out"]["tokens_bits_per_slot"]),
                         abs(r["held_out"]["psnr@8"]["mean"] - twin["held_out"]["psnr@8"]["mean"]))
    return out


def scaling_reading(runs: dict[str, dict], stage1_minutes: float | None, stage1_threads: str = "1") -> str:
    """The scaling runs in words: rates per doubling of steps and of photos, a single run's spread, and how far
    each lever would have to go to reach the tokens goal at its last rate."""
    axes = ScalingAxes.of(runs)
    full, budget, by_steps, by_photos = axes.full, axes.budget, axes.by_steps, axes.by_photos
    tell_steps = held_out_points(by_steps, "steps", "tokens_bits_per_slot")
    tell_photos = held_out_points(by_photos, "photos", "tokens_bits_per_slot")
    gaps = ", ".join(f"{r['training']['tokens_bits_per_slot'] - r['held_out']['tokens_bits_per_slot']:.2f}" for r in by_photos)
    text = (f"Per doubling of the steps on {full} photos, what the tokens tell about held-out codes changed by "
            f"{rates_text(doubling_rates(tell_steps), 'bits/slot')} steps (held-out PSNR@8: "
            f"{rates_text(doubling_rates(held_out_points(by_steps, 'steps', 'psnr@8')), 'dB')}); per doubling of the "
            f"photos at {budget} steps by {rates_text(doubling_rates(tell_photos), 'bits/slot')} photos, while what they "
            f"tell on the runs' own training crops beyond held-out ones went {gaps} bits/slot with "
            f"{', '.join(str(r['photos']) for r in by_photos)} photos.")
    spread: dict[int, float] = {}
    for name, (r, tell_moved, psnr_moved) in repeat_moves(runs).items():
        spread[r["steps"]] = max(spread.get(r["steps"], 0.0), tell_moved)
        text += (f" The repeat `{name}` ({r['steps']} steps, seed {r['seed']}) says how far a single run moves there: "
                 f"{tell_moved:.2f} bits/slot and {psnr_moved:.2f} dB on held-out crops.")
    within = [f"{a} to {b}" for a, b, rate in doubling_rates(tell_photos)
              if budget in spread and abs(rate * math.log2(b / a)) < spread[budget]]
    if within:
        text += f" At {budget} steps the change from {' and from '.join(within)} photos lies within that spread."
    longest = max(axes.photo_series)  # the longest budget trained on several photo counts: where the recipe ends
    if longest != budget:
        series = axes.photo_series[longest]
        points = held_out_points(series, "photos", "tokens_bits_per_slot")
        text += (f" At {longest} steps, {' and '.join(str(r['photos']) for r in series)} photos tell "
                 f"{' and '.join(f'{v:.2f}' for _, v in points)} bits/slot "
                 f"({', '.join(f'{rate:+.2f}' for *_, rate in doubling_rates(points))} bits/slot per doubling)")
        wide = [r["held_out_wide"]["tokens_bits_per_slot"] for r in series if "held_out_wide" in r]
        if len(wide) == len(series):
            text += f"; on the wider held-out set {' and '.join(f'{v:.2f}' for v in wide)}"
        if spread:
            moved, largest = points[-1][1] - points[0][1], max(spread.values())
            text += (f". From {points[0][0]} to {points[-1][0]} photos that is {moved:+.2f} bits/slot on the held-out set, "
                     f"{'more' if abs(moved) > largest else 'no more'} than the largest seed spread measured ({largest:.2f})")
        text += "."
        tell_photos, budget = points, longest
    more_steps = doublings_needed(tell_steps, TOKENS_GOAL_BITS)
    more_photos = doublings_needed(tell_photos, TOKENS_GOAL_BITS)
    if more_steps is None:
        text += " More steps did not raise what the tokens tell at the last interval"
    else:
        factor = 2 ** more_steps
        hours = factor * stage1_minutes / 60 if stage1_minutes else None
        span = "" if hours is None else (f", about {hours:.0f} hours" if hours < 48 else f", about {hours / 24:.0f} days")
        text += (f" At the last interval's rate the goal of {TOKENS_GOAL_BITS} bits/slot needs about {more_steps:.1f} "
                 f"more doublings of the steps ({factor:,.0f} times the recipe's {max(tell_steps)[0]}{span} of "
                 f"{'one core' if stage1_threads == '1' else stage1_threads + ' cores'} for stage 1 alone)")
        rates = [rate for *_, rate in doubling_rates(tell_steps)]
        text += ", and that rate is falling" if rates[-1] < rates[0] else ""
    if more_photos is None:
        return text + "; more photos did not raise it either."
    text += (f"; at the photos' last rate it needs about {more_photos:.1f} doublings of the photos (about "
             f"{max(tell_photos)[0] * 2 ** more_photos:.0f} photos at {budget} steps). Rough extrapolations from single runs")
    lever = more_steps is None or more_photos < more_steps
    return text + ("; they say distinct photos move this recipe further than steps do." if lever else ".")


def scaling_summary(scaling: dict | None) -> str:
    """One sentence for the card's first reading: held-out tokens tell along both levers, pointing at the section."""
    if not scaling:
        return ""
    axes = ScalingAxes.of(scaling["runs"])
    photos = held_out_points(axes.by_photos, "photos", "tokens_bits_per_slot")
    steps = held_out_points(axes.by_steps, "steps", "tokens_bits_per_slot")

    def series(points: list[tuple[int, float]]) -> tuple[str, str]:
        return " / ".join(f"{v:.2f}" for _, v in points), " / ".join(str(n) for n, _ in points)

    (tell_p, n_p), (tell_s, n_s) = series(photos), series(steps)
    longest = max(axes.photo_series)
    more = [f"{tell_s} after {n_s} steps on {axes.full} photos"]
    if longest != axes.budget:
        tell_l, n_l = series(held_out_points(axes.photo_series[longest], "photos", "tokens_bits_per_slot"))
        more.append(f"{tell_l} after {longest} steps on {n_l} photos")
    return (f"\n  Stage 1's tokens tell {tell_p} bits/slot about held-out codes after {axes.budget} steps on {n_p} photos,\n"
            f"  {', '.join(more[:-1])}{', ' if len(more) > 1 else ''}and {more[-1]} (section \"How stage 1 scales with "
            "steps and with photos\").")


def scaling_section(scaling: dict | None, stage1_minutes: float | None, stage1_threads: str = "1") -> str:
    """How stage 1 of this recipe scales with steps and with photos (scripts/measure_default_scaling.py)."""
    if not scaling:
        return ""
    runs, proto = scaling["runs"], scaling["protocol"]
    order = sorted(runs.items(), key=lambda item: (item[1]["photos"], item[1]["steps"], item[1]["seed"]))
    wide = "held_out_wide" in proto

    def wide_cells(r: dict) -> str:
        w = r.get("held_out_wide")
        return "" if not wide else (f" {with_ci(w['psnr@8'])} | {fmt(w['tokens_bits_per_slot'])} |" if w else " - | - |")

    rows = "".join(
        f"| {name} | {r['steps']} | {r['photos']} | {r['seed']} | {with_ci(r['held_out']['psnr@8'])} | "
        f"{fmt(r['held_out']['tokens_bits_per_slot'])} | {with_ci(r['training']['psnr@8'])} | "
        f"{fmt(r['training']['tokens_bits_per_slot'])} |{wide_cells(r)}\n" for name, r in order)
    head = ("| run | steps | photos | seed | held-out PSNR@8 | held-out tokens tell (bits/slot) | own training crops PSNR@8 "
            "| own training crops tokens tell |" + (" wider held-out PSNR@8 | wider held-out tokens tell |" if wide else "")
            + "\n|" + "---|" * (10 if wide else 8))
    wide_text = f" The last two columns measure the same on {proto['held_out_wide']}." if wide else ""
    axes = ScalingAxes.of(runs)
    subsets = " and ".join(str(r["photos"]) for r in axes.by_photos if r["photos"] < axes.full)
    wider = "".join(f", and on all {r['photos']} training photos of the wider photo set {r['photo_set']} (those "
                    f"{axes.full} and the permissively licensed Debian package photos)"
                    for r in runs.values() if r["photos"] > axes.full and "photo_set" in r and r["steps"] == axes.budget)
    repeated = ", one setting again with another seed" if any("repeat_of" in r for r in runs.values()) else ""
    held_out = f" ({proto['held_out']})" if "held_out" in proto else ""
    intro = (f"`scripts/measure_default_scaling.py` trains stage 1 of this recipe (`{proto['config']}`, one run per "
             f"setting{repeated}) for several step budgets on {axes.full} training photos, and for {axes.budget} steps "
             f"on nested subsets of them (the first {subsets} of a seeded shuffle, every crop cut from them){wider}; a "
             "shorter run's learning-rate schedule ends at its last step. Each is measured with the protocol above on "
             f"{proto['crops']} held-out crops{held_out} and on {proto['crops']} crops of the run's own training "
             f"photos.{wide_text} `stage1` is the recipe's own stage-1 run.")
    return f"""## How stage 1 scales with steps and with photos
{textwrap.fill(intro, width=118, break_on_hyphens=False)}

{head}
{rows}
{textwrap.fill(scaling_reading(runs, stage1_minutes, stage1_threads), width=118, break_on_hyphens=False)}
"""
