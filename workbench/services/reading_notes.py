"""Sentences for numbers that look wrong at first sight, shown next to the plots that show them.

Estimators of mutual information can come out negative, and an interval may straddle zero; an
information gain below zero means the model does worse with the codes it revealed than from its tokens alone. A reader should not
have to know that: each case gets one plain sentence.
"""
from __future__ import annotations

from analysis import REVEAL_FRACTIONS
from workbench.services.analyses import InformationReport, ModelInformation


def mi_notes(report: InformationReport) -> list[str]:
    """Notes on the leave-one-out MI bars and the summary's mean estimate, per model."""
    notes = []
    for m in report.models:
        loo, row = m.loo, m.summary()
        straddle = int(((loo.ci_low <= 0) & (loo.ci_high >= 0)).sum())
        negative = int((loo.bits < 0).sum())
        if row.get("ci_low") is not None and row["ci_low"] <= 0 <= row["ci_high"]:
            notes.append(f"{m.label}: the mean MI ({row['loo_mi_bits']:.3f} bits) is not distinguishable from zero "
                         f"(its {loo.confidence:.0%} interval [{row['ci_low']:.3f}, {row['ci_high']:.3f}] includes 0).")
        if straddle:
            notes.append(f"{m.label}: {straddle} of {len(loo.bits)} slots are not distinguishable from zero "
                         "(their interval includes 0).")
        if negative:
            notes.append(f"{m.label}: {negative} slot estimates are negative. True MI is never below zero; a negative "
                         "estimate is sampling noise of the estimator on this few images.")
    return notes


#: The hidden codes' cross-entropy must fall by at least this much (bits/slot) with most codes revealed
#: for a decoder to count as reading them.
READS_REVEALED_BITS = 0.05


def reveal_drop(m: ModelInformation) -> float | None:
    """How far the hidden codes' cross-entropy falls (bits/slot) with most codes revealed; None when not measured."""
    return m.reveal_bits[0] - m.reveal_bits[-1] if len(m.reveal_bits) >= 2 else None


def reveal_note(m: ModelInformation) -> str | None:
    """One sentence when revealing most of the target codes does not help the decoder with the rest."""
    drop = reveal_drop(m)
    if drop is None or drop >= READS_REVEALED_BITS:
        return None
    return (f"{m.label}: with {round(100 * REVEAL_FRACTIONS[-1])}% of the target codes revealed, its cross-entropy on "
            f"the rest is {m.reveal_bits[-1]:.2f} bits/slot against {m.reveal_bits[0]:.2f} with none revealed: this "
            "decoder does not read revealed codes, so its later decode steps gain little from the codes committed earlier. "
            "Self-forcing (SFVR) with every context slot its own first guess teaches exactly this: those guesses are "
            "computed from the same tokens, so they tell nothing about the true codes beyond them; reading them can "
            "save the decoder computation, never add information.")


def trajectory_notes(report: InformationReport) -> list[str]:
    """Notes on the information-gain panel, per model: negative gains on its own trajectory, and steps where
    even the teacher's codes at the committed slots do not help."""
    notes = []
    for m in report.models:
        rows = m.trajectory.rows[1:]  # step 1 sees every slot masked: its gains are 0 by definition
        negative = [str(r.step + 1) for r in rows if r.info_gain_bits_per_image < 0]
        if negative:
            notes.append(f"{m.label}: negative information gain with its own codes at step {', '.join(negative)}: given "
                         "the codes it committed earlier it predicts the true codes worse than from its tokens alone "
                         "(its own guesses mislead it there). Its own codes say nothing about the true codes beyond the "
                         "tokens, so even a decoder consistent with itself gains nothing here on average; the dashed "
                         "line (the teacher's codes at the same slots) shows what revealed codes are worth to it.")
        flat = [str(r.step + 1) for r in rows if r.teacher_gain_bits_per_image <= 0]
        if flat:
            notes.append(f"{m.label}: at step {', '.join(flat)} even the teacher's codes at the committed slots do not "
                         "lower the cross-entropy of the rest: this decoder gets nothing out of revealed codes there.")
        note = reveal_note(m)
        if note:
            notes.append(note)
    pair = comparison_note(report)
    return notes + ([pair] if pair else [])


def _gains(m: ModelInformation) -> tuple[float, float]:
    """Information gain along the decode, summed over the steps: (with its own codes, with the teacher's there)."""
    rows = m.trajectory.rows
    return sum(r.info_gain_bits_per_image for r in rows), sum(r.teacher_gain_bits_per_image for r in rows)


def comparison_note(report: InformationReport) -> str | None:
    """For two models, the SFVR-against-vanilla reading in one sentence: which one reads revealed codes, and what
    its own guesses cost it against the teacher's codes at the same slots (exposure bias)."""
    if len(report.models) != 2 or any(reveal_drop(m) is None for m in report.models):
        return None
    reader, other = sorted(report.models, key=reveal_drop, reverse=True)
    if reveal_drop(reader) < READS_REVEALED_BITS:
        return None  # neither reads revealed codes: the per-model notes say so
    (own, teacher), (other_own, other_teacher) = _gains(reader), _gains(other)
    text = (f"{reader.label} against {other.label}: {reader.label} reads revealed codes (with "
            f"{round(100 * REVEAL_FRACTIONS[-1])}% of them revealed the rest's cross-entropy falls by "
            f"{reveal_drop(reader):.2f} bits/slot, against {reveal_drop(other):.2f}; leave-one-out interval above "
            f"zero at {reader.loo.slots_above_zero} of {len(reader.loo.bits)} slots, against "
            f"{other.loo.slots_above_zero}). Summed over the decode, the teacher's codes at its committed slots are "
            f"worth {teacher:.1f} bits/image to it and its own codes {own:.1f} ({other.label}: {other_teacher:.1f} "
            f"and {other_own:.1f})")
    if teacher - own > other_teacher - other_own:
        text += (": the decoder that trusts revealed codes is the one its own wrong guesses cost more, the exposure "
                 "bias that self-forcing (SFVR) trains against")
    return text + "."


def as_markdown(notes: list[str]) -> str:
    return "\n".join(f"- {n}" for n in notes)
