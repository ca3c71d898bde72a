"""The card's "Reading the numbers": what limits quality, what the decode steps get, and the findings of earlier
experiments, worded from the measured numbers and the runs' learning curves."""
from __future__ import annotations

import math

from .findings import RECIPE_PROBES, SIZE_CHOICE
from .formatting import fmt, gains_text, with_ci
from .information import neighbour_text, trajectory_bound
from .quality import below_teacher
from .recipes import sfvr_reading, shipped_choice
from .runs import curve_shape, curve_text
from .scaling import saved_scaling, scaling_summary
from .sources import CardSources, photo_count

SAME_GAP_DB = 1.0  # gaps to the teacher on training and held-out crops closer than this read as "about as far"


def limits_bullet(evaluation: dict, photos: int) -> str:
    """The first reading: what limits quality, from the reference points and the training-photo measurement."""
    shipped = evaluation["shipped"]
    train, refs = evaluation.get("training_photos"), evaluation.get("thumbnails")
    if not train or shipped not in train or not refs:
        return "- What limits quality is the size of this model and of its data, not the length of training."
    held, info = evaluation["models"], evaluation["information"][shipped]
    t, h = train[shipped]["psnr@8"]["mean"], held[shipped]["psnr@8"]["mean"]
    mean_t, mean_h = refs["training"]["1"]["mean"], refs["held_out"]["1"]["mean"]
    teacher_t, teacher_h = train["teacher"]["psnr"]["mean"], held["teacher"]["psnr"]["mean"]
    gap_t, gap_h = below_teacher(evaluation, shipped)
    extra = gap_h - gap_t  # what the tokenizer loses on held-out photos beyond the teacher's loss
    behind = ("about as far behind on both sets" if abs(extra) < SAME_GAP_DB else
              f"{fmt(abs(extra))} dB {'further' if extra > 0 else 'less far'} behind on the held-out photos")
    probe = evaluation.get("thumbnail_probes", {})
    probe_text = (f" A linear probe reads little layout off its features either ({fmt(probe['tokens']['mean'])} dB from the "
                  f"tokens, {fmt(probe['continuous']['mean'])} from\n  the encoder's outputs, section \"Reference points "
                  "without a model\").") if probe else ""
    return (f"- What limits quality is what this recipe learns, not what 64 tokens can hold. Each held-out crop "
            f"rebuilt from its\n  own mean colour scores {fmt(mean_h)} dB, from a 2x2 thumbnail (12 numbers) "
            f"{fmt(refs['held_out']['2']['mean'])} dB; the shipped model scores {fmt(h)}\n  dB ({fmt(t)} on training "
            f"crops, whose mean colour alone scores {fmt(mean_t)}): its reconstructions carry about a crop's mean\n  "
            f"colour, not its layout.{probe_text} On crops of its {photos} training photos its tokens tell "
            f"{fmt(train[shipped]['tokens_bits_per_slot'])}\n  bits/slot about the teacher's codes (held out: "
            f"{fmt(info['tokens_bits_per_slot'])}), partly which photo a crop shows, which does not transfer. "
            f"{teacher_gap_text(teacher_t, teacher_h)}, and\n  measured against its teacher the tokenizer is {behind} "
            f"({fmt(gap_t)} and {fmt(gap_h)} dB).")


def teacher_gap_text(on_training: float, on_held_out: float) -> str:
    """The teacher's PSNR on training against held-out crops, in words: which set is the harder one."""
    drop = on_training - on_held_out
    if abs(drop) < SAME_GAP_DB:
        return (f"The\n  teacher does about as well on the held-out photos ({fmt(on_training)} -> {fmt(on_held_out)} "
                "dB)")
    side = "harder" if drop > 0 else "easier"
    return (f"The\n  held-out photos are {side} pictures: the teacher {'loses' if drop > 0 else 'gains'} "
            f"{fmt(abs(drop))} dB on them too ({fmt(on_training)} -> {fmt(on_held_out)})")


def computation_saving(evaluation: dict) -> str:
    """What an SFVR decoder's later passes are worth, read off the SFVR seeds' PSNR@8 - PSNR@1 (its context adds
    computation, not information); empty when the build evaluated one seed only."""
    gain = evaluation.get("seeds", {}).get("stage2_sfvr", {}).get("gain_8_minus_1")
    if not gain:
        return ""
    return f"; at this size that saving is worth {fmt(gain['mean'])} dB (PSNR@8 - PSNR@1 of the SFVR seeds above)"


def reading(evaluation: dict, sources: CardSources) -> str:
    """The card's plain-words reading, worded from the measured numbers and the runs' learning curves."""
    shipped, runs = evaluation["shipped"], sources.runs
    m, info = evaluation["models"][shipped], evaluation["information"][shipped]
    capacity = 64 * math.log2(evaluation["codebook"][shipped]["codebook_size"])
    loo = info["loo_mean_ci"]
    base = evaluation["code_baseline"]
    reveal_text = " / ".join(fmt(v) for v in info["ce_hidden_by_reveal_bits"])
    vanilla = evaluation["information"].get("stage2_vanilla", info)["ce_hidden_by_reveal_bits"]
    vanilla_text = " / ".join(fmt(v) for v in vanilla)
    drop = info["ce_hidden_by_reveal_bits"][0] - info["ce_hidden_by_reveal_bits"][-1]
    loo_verdict = ("above zero: revealed codes tell this decoder about a masked one" if loo[0] > 0 else
                   "not distinguishable from zero: given the tokens, the other codes tell this decoder little")
    reveal_verdict = (f"revealed codes lower it by {fmt(drop)} bits/slot: the decoder reads them" if drop >= 0.05 else
                      "revealing codes does not lower it: this decoder does not read them")
    return f"""{limits_bullet(evaluation, photo_count(sources.data))}{scaling_summary(saved_scaling())} The in-training
  held-out PSNR@8 (RGB, so a little below the Y-channel numbers above) of stage 1 went {curve_text(runs, 'stage1')}: {curve_shape(runs, 'stage1')}; stage 3 went {curve_text(runs, 'stage3')}. The tokens tell the decoder
  {fmt(info['tokens_bits_per_image'], 0)} bits per image about the teacher's held-out codes (cross-entropy
  {fmt(info['tokens_bits_per_slot'])} bits/slot below the marginal), of the {capacity:.0f} bits 64 tokens of a
  {evaluation['codebook'][shipped]['codebook_size']}-code codebook can hold. PSNR@8 stays at {fmt(m['psnr@8']['mean'])} dB
  against the 19 dB goal; the teacher alone reaches
  {fmt(evaluation['models']['teacher']['psnr']['mean'])} dB.
- What the decode steps get: multi-step decoding pays off by the information the codes share given the tokens,
  I(m_i; m_rest | Z_q) (the paper's argument). Measured leave-one-out on this model it is
  {fmt(info['loo_mean_bits'], 3)} bits/slot (95% interval [{fmt(loo[0], 3)}, {fmt(loo[1], 3)}]; {loo_verdict}).
  Directly: with 0, 50 and 90% of the teacher's codes revealed, the cross-entropy of the still-hidden ones is
  {reveal_text} bits/slot for this model ({reveal_verdict}); for the vanilla stage-2 model {vanilla_text}. For scale,
  a plain table of left-neighbour pairs from {base['train_crops']} training crops predicts the held-out codes at
  {fmt(base['left_neighbour_ce_bits'])} bits/slot from one neighbour alone (`analysis.estimators.left_neighbour_cross_entropy`);
  {neighbour_text(base)} On its own decode trajectory (its committed codes, not the teacher's) the information gain is
  positive at every step in {info['groups_all_positive']} of {info['groups']} groups of held-out crops; averaged over all
  {evaluation['protocol']['information_images']} crops it is {gains_text(info['gain_bits_per_image_all'][1:])}
  bits/image at steps 2-8. In pixels: PSNR@8 - PSNR@1 = {with_ci(m['gain_8_minus_1'])} dB.
  {trajectory_bound(info, evaluation['protocol']['information_images'])}
- Reading revealed codes had to be taught (2026-12-01). The previous stage-2 recipe (stage 1's weights as they were,
  lr 2e-4, 1500 steps) gave decoders that copied a revealed code at its own slot but learnt nothing from it for the
  others: their curves were flat (vanilla 6.61 / 6.61 / 6.67, the stage 3 shipped then 6.76 / 6.77 / 6.87). Stage 1
  masks every slot, so the code rows of the decoder's input table were still at PyTorch's N(0, 1), vectors ~11 times
  longer than a slot's position. Redrawing them at N(0, 0.02) (the official init's scale), adding a 2-D sine-cosine grid
  to the slot positions and training at lr 1e-3 (`decoder_init` in the stage-2 YAMLs) made a vanilla decoder read them
  within 1000 steps in a test run (6.79 with nothing revealed, 5.73 with 75% revealed); redrawing alone, also at lr 1e-3,
  reached 6.14. SFVR (context = the model's own first guesses, never the teacher's codes) is not trained to read the
  teacher's codes, nor given any information in its context: the first guess is the argmax of a pass over the same
  tokens the graded pass reads, a function of them, so it tells nothing about the teacher's codes beyond the tokens
  (I(m; M_1 | Z_q) = 0). Reading it can save the decoder computation, never add information{computation_saving(evaluation)}.
  The curves above say how far it reads anyway.
- Stage 3 (pixel head and decoder trained on L2) adds most of the PSNR: it learns a soft render of the decoder's
  uncertain predictions, which L2 rewards with blur. It keeps the decoder's logits a usable model of the teacher's
  codes (its cross-entropy stays within a few tenths of a bit of the stage-2 model's), so the Information screen
  measures something real on it.
{sfvr_reading(evaluation)}
{shipped_choice(evaluation)}
{SIZE_CHOICE}
{RECIPE_PROBES}"""
