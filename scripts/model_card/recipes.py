"""Which stage-2 recipe: SFVR against vanilla over repeated seeds, the two read together, and which one ships."""
from __future__ import annotations

from .formatting import fmt, seed_verdict
from .quality import goal_rows, other_stage3


def recipe_difference(sfvr: dict, vanilla: dict, key: str) -> tuple[float, float]:
    """(SFVR - vanilla mean, the larger of their seed spreads) of one measure: a difference counts beyond the spread."""
    return sfvr[key]["mean"] - vanilla[key]["mean"], max(sfvr[key]["std"], vanilla[key]["std"])


def seeds_section(seeds: dict) -> str:
    """SFVR against vanilla over repeated seeds: a difference is claimed only when it exceeds the spread."""
    sfvr, vanilla = seeds.get("stage2_sfvr"), seeds.get("stage2_vanilla")
    if not sfvr or not vanilla:
        return "Only one seed per stage-2 recipe was evaluated: no claim either way."
    rows = "| recipe | seeds | PSNR@1 | PSNR@8 | PSNR@8 - PSNR@1 |\n|---|---|---|---|---|\n"
    for label, group in (("SFVR", sfvr), ("vanilla", vanilla)):
        cells = " | ".join(f"{fmt(group[k]['mean'])} +- {fmt(group[k]['std'])}" for k in ("psnr@1", "psnr@8", "gain_8_minus_1"))
        rows += f"| {label} | {', '.join(str(v) for v in group['runs'].values())} | {cells} |\n"
    lines = []
    compared = [("psnr@8", "PSNR@8", "dB", "better"), ("gain_8_minus_1", "the per-step gain PSNR@8 - PSNR@1", "dB", "better"),
                ("tokens_bits_per_slot", "what the tokens tell about the teacher's codes", "bits/slot", "higher"),
                ("reveal_drop_bits", "how much revealing 90% of the teacher's codes lowers the cross-entropy of the rest",
                 "bits/slot", "higher"),
                ("loo_mean_bits", "leave-one-out MI", "bits/slot", "higher")]
    for key, what, unit, word in compared:
        if key not in sfvr or key not in vanilla:
            continue
        diff, spread = recipe_difference(sfvr, vanilla, key)
        verdict = seed_verdict(diff, spread, "SFVR", "vanilla", word)
        lines.append(f"- {what}: SFVR {fmt(sfvr[key]['mean'])} +- {fmt(sfvr[key]['std'])}, vanilla "
                     f"{fmt(vanilla[key]['mean'])} +- {fmt(vanilla[key]['std'])} {unit}; SFVR - vanilla = {fmt(diff)} "
                     f"against a seed spread (larger std) of {fmt(spread)}: **{verdict}**.")
    return ("Mean +- sample standard deviation over seeds (each seed: same stage-1 start, same steps, its own data order, "
            "masks and SFVR draws):\n\n" + rows + "\n" + "\n".join(lines))


def sfvr_reading(evaluation: dict) -> str:
    """SFVR against vanilla read together: who reads the teacher's codes, and who does better on its own trajectory."""
    sfvr, vanilla = evaluation["seeds"].get("stage2_sfvr"), evaluation["seeds"].get("stage2_vanilla")
    info = evaluation["information"]
    if not sfvr or not vanilla or "loo_mean_bits" not in sfvr or "stage2_sfvr" not in info:
        return ""
    diff, spread = recipe_difference(sfvr, vanilla, "psnr@8")
    beyond = "beyond" if abs(diff) > spread else "within"
    return f"""- SFVR against vanilla, read together (three seeds each, section above): the vanilla decoders learnt to read
  the teacher's revealed codes (leave-one-out MI {fmt(vanilla['loo_mean_bits']['mean'])} +- {fmt(vanilla['loo_mean_bits']['std'])}
  bits/slot), the SFVR ones did not ({fmt(sfvr['loo_mean_bits']['mean'])} +- {fmt(sfvr['loo_mean_bits']['std'])}). On their
  own decode trajectory, where the revealed codes are the model's own sampled guesses, SFVR - vanilla PSNR@8 =
  {fmt(diff)} dB, {beyond} the seeds' spread ({fmt(spread)}), and the information gain is positive at every step in
  {info['stage2_sfvr']['groups_all_positive']} of {info['stage2_sfvr']['groups']} groups for SFVR against
  {info['stage2_vanilla']['groups_all_positive']} of {info['stage2_vanilla']['groups']} for vanilla (seed-42 runs). A decoder
  that trusts revealed codes is misled when they are its own mistakes: the exposure bias SFVR is built against."""


def shipped_choice(evaluation: dict) -> str:
    """Which stage-2 recipe the shipped stage 3 builds on, against the other recipe's stage 3, by the stated rule."""
    shipped, others = evaluation["shipped"], other_stage3(evaluation)
    if not others:
        return ""

    def facts(name: str) -> tuple[int, str, str]:
        """Goals met, PSNR@8 and the reveal-curve drop of run ``name``."""
        curve = evaluation["information"][name]["ce_hidden_by_reveal_bits"]
        met = sum(ok for *_, ok in goal_rows(evaluation, name))
        return met, fmt(evaluation["models"][name]["psnr@8"]["mean"]), fmt(curve[0] - curve[-1])

    met, psnr8, drop = facts(shipped)
    lines = [f"- Which stage 2 ships: the shipped stage 3 builds on `{evaluation.get('shipped_from', 'stage2_sfvr')}` and "
             f"meets {met} of the {len(goal_rows(evaluation, shipped))} goals (PSNR@8 {psnr8} dB; revealing 90% of the "
             f"teacher's codes lowers the cross-entropy of the rest by {drop} bits/slot)."]
    for name in others:
        met, psnr8, drop = facts(name)
        lines.append(f"  `{name}` (the same stage-3 recipe on the other stage 2) meets {met} (PSNR@8 {psnr8} dB; "
                     f"{drop} bits/slot).")
    lines.append("  Rule: ship the stage 3 that meets more goals; a tie goes to SFVR, the paper's recipe.")
    return "\n".join(lines)

