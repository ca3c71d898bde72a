"""What the tokens carry about the teacher's codes: the information table, the information gain along the decode
trajectory (and why it stays near zero there), the same on the shipped samples, and neighbouring codes' overlap."""
from __future__ import annotations

from .formatting import fmt, gains_text


def teacher_gains_cell(r: dict) -> str:
    """Steps 2-8 of the gain with the teacher's codes at the committed slots, and its groups (older evaluations lack it)."""
    gains = r.get("teacher_gain_bits_per_image", [])[1:]
    if not gains:
        return "not measured | -"
    return f"{gains_text(gains)} | {r['teacher_groups_all_positive']} of {r['groups']}"


def information_table(information: dict) -> str:
    """Per model: what its tokens tell about the teacher's codes, the gain along its own decode trajectory and with
    the teacher's codes, leave-one-out MI and the cross-entropy as codes are revealed (one row, all the measures)."""
    rows = ("| model | CE given tokens | marginal entropy | tokens tell (bits/slot) | information gain per image, steps 2-8 "
            "(screen defaults) | groups positive at every step | the same with the teacher's codes at the committed "
            "slots | groups positive | LOO slots above zero | CE of hidden codes with "
            "0 / 50 / 90% of the others revealed |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for name in sorted(information):
        r = information[name]
        gains = r["gain_bits_per_image"][1:]
        rows += (f"| {name} | {fmt(r['ce_given_tokens_bits'])} [{fmt(r['ce_ci'][0])}, {fmt(r['ce_ci'][1])}] | "
                 f"{fmt(r['marginal_entropy_bits'])} | {fmt(r['tokens_bits_per_slot'])} | "
                 f"{gains_text(gains)} | {r['groups_all_positive']} of {r['groups']} | "
                 f"{teacher_gains_cell(r)} | "
                 f"{r['loo_slots_above_zero']} of {r['loo_slots']} | "
                 f"{' / '.join(fmt(v) for v in r.get('ce_hidden_by_reveal_bits', ())) or 'not measured'} |\n")
    return rows


def neighbour_text(baseline: dict) -> str:
    """How much adjacent held-out teacher codes share: what a decoder reading revealed neighbours could use."""
    mi = baseline.get("neighbour_mi_bits")
    if not mi:
        return ""
    h, v = mi["horizontal"], mi["vertical"]
    return (f"neighbouring held-out codes share {fmt(h['bits'])} / {fmt(v['bits'])} bits of mutual information "
            f"(horizontal / vertical, Miller-Madow, {fmt(h['shuffled_bits'])} when shuffled).")


def trajectory_bound(info: dict, images: int) -> str:
    """Why the gain on the model's own trajectory is not where the paper's information shows, and where it does."""
    text = ("Why the gain on its own trajectory stays near zero: the codes it commits are its own samples, which say "
            "nothing about the true codes beyond the tokens, so for a decoder whose predictions are consistent with "
            "one joint distribution, sampling its codes from it, the expected gain there is at most zero (Jensen's inequality: "
            "E[-log q(m | Z, own codes)] >= -log E[q(m | Z, own codes)] = -log q(m | Z)); a positive gain needs the "
            "decoder's one-pass prediction to under-use its tokens.")
    teacher = info.get("teacher_gain_bits_per_image_all", [])[1:]
    if not teacher:
        return text
    return (text + " With the teacher's codes at the same committed slots (what the paper's argument measures) the "
            f"gain is {gains_text(teacher)} bits/image at steps 2-8 (mean over {images} crops), "
            f"positive at every step in {info['teacher_groups_all_positive']} of {info['groups']} groups.")


def samples_information(samples: dict) -> str:
    """What the code-level measures say on the shipped whole-photo views (not crops like the training data)."""
    info = samples.get("information")
    if not info:
        return ""
    gains = info["gain_bits_per_image"][1:]
    negative = [str(step) for step, g in enumerate(gains, start=2) if g < 0]
    verdict = (f"negative at step{'s' if len(negative) > 1 else ''} {', '.join(negative)}: on whole photos shrunk to "
               "64 px (a coarser view than most training crops) the codes the decoder reveals mislead it about the rest"
               if negative else "positive at every step")
    return (f"Code information on these {info['images']} views (`analysis/code_information.py`, all of them as the "
            f"screen's images): the tokens tell {fmt(info['tokens_bits_per_slot'])} bits/slot about the teacher's codes "
            f"(cross-entropy {fmt(info['ce_given_tokens_bits'])} against a marginal of {fmt(info['marginal_entropy_bits'])}); "
            f"the information gain along the trajectory, steps 2-8, is {gains_text(gains)} bits/image, "
            f"{verdict}. The Information screen's defaults read held-out crops, where the table above applies.")
