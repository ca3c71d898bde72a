"""Sentences for numbers that look wrong at first sight, shown next to the plots that show them.

Estimates of quantities that cannot be negative (mutual information, total correlation, a KL divergence) can come
out negative, and an interval may straddle zero; an information gain below zero means the model does worse with the
codes it revealed than from its tokens alone. A reader should not have to know that: each case gets one plain sentence.
"""
from __future__ import annotations

import math

from analysis import REVEAL_FRACTIONS
from workbench.services.analyses import InformationReport, ModelInformation


def below_zero_note(label: str, finding: str, quantity: str, cause: str) -> str:
    """One sentence for an estimate below zero of a quantity that cannot be: what was found, and how to read it."""
    return f"{label}: {finding}. True {quantity} is never below zero; a negative estimate is {cause}: read it as zero."


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
            notes.append(below_zero_note(m.label, f"{negative} slot estimates are negative", "MI",
                                         "sampling noise of the estimator on this few images"))
    return notes


#: A block total correlation within this many standard errors of zero is not told apart from zero.
TC_STANDARD_ERRORS = 2.0


def block_tc_note(m: ModelInformation) -> str | None:
    """One sentence when the block total correlation comes out below zero at some decode step."""
    rows = [r for r in m.trajectory.rows if r.block_tc_bits < 0]
    if not rows:
        return None
    steps = ", ".join(f"{r.step + 1} ({r.block_tc_bits:.3f})" for r in rows)
    beyond = [str(r.step + 1) for r in rows
              if math.isfinite(r.block_tc_sem) and -r.block_tc_bits > TC_STANDARD_ERRORS * r.block_tc_sem]
    cause = ("noise and bias of the estimator at this sample size (it compares cross-entropies of the decoder's own "
             "predictions over a few images)")
    if beyond:
        cause += (f"; at step {', '.join(beyond)} it lies more than {TC_STANDARD_ERRORS:g} standard errors below zero, "
                  "so measure more images before reading anything into it")
    else:
        cause += f", and every one of these lies within {TC_STANDARD_ERRORS:g} standard errors of zero (the error bars)"
    return below_zero_note(m.label, f"the block total correlation is negative at step {steps} bits/image",
                           "total correlation", cause)


def self_forcing_reading(report: InformationReport) -> str:
    """What the self-forcing panels show and how to read them (Markdown), for the report's targets."""
    teacher = all(m.target_source == "teacher" for m in report.models)
    codes = "the teacher's codes" if teacher else "the codes of its own full decode (no teacher here)"
    return (f"**Reading the self-forcing gap.** At every decode step the slots the model has committed are refilled "
            f"with {codes} at the same slots, and its two predictions for the still-masked slots are compared. "
            "*KL*: how far its own committed codes move those predictions from where the right codes would put them, "
            "in bits per still-masked slot. 0 means its own codes steer it as the right ones would, or that it does not "
            "read committed codes at all; a larger value is the exposure bias that self-forcing (SFVR) trains against, "
            "so a stage-2 model should sit below its stage-1 parent. Step 1 has nothing committed, so its KL is 0. "
            "*Revealed-slot accuracy*: the share of the committed slots whose code is right; *committed-slot accuracy*: "
            "the share of the codes committed at that step that are right.")


def self_forcing_notes(report: InformationReport) -> list[str]:
    """A note per model whose self-forcing KL comes out below zero (the mean, or at some step)."""
    notes = []
    for m in report.models:
        negative = [r for r in m.gap.rows if r.kl_bits < 0]
        if not negative and m.gap.mean_kl_bits >= 0:
            continue
        steps = ", ".join(f"{r.step + 1} ({r.kl_bits:.4f})" for r in negative)
        finding = f"its self-forcing KL is {m.gap.mean_kl_bits:.4f} bits/slot" + (f", negative at step {steps}"
                                                                                  if steps else "")
        notes.append(below_zero_note(m.label, finding, "KL divergence",
                                     "floating-point error in comparing two nearly equal predictions (each slot's "
                                     "KL is computed exactly from the two distributions): there is no gap"))
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
        notes += [n for n in (block_tc_note(m), reveal_note(m)) if n]
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
