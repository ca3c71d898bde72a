"""Reconstruction quality against the default-model issue's goals: the goal table, PSNR/SSIM per model, training
photos beside held-out ones, the default this build replaced, and model-free reference points."""
from __future__ import annotations

from trainers.data.photos import photo_set

from .formatting import fmt, gains_text, with_ci

GOALS = "issue 15"  # where the targets below come from


def quality_table(models: dict) -> str:
    """PSNR at 1, 2, 4 and 8 decode steps (with intervals) and SSIM per model; the teacher has its own line."""
    rows = "| model | PSNR@1 | PSNR@2 | PSNR@4 | PSNR@8 | PSNR@8 - PSNR@1 | SSIM@1 | SSIM@8 |\n|---|" + "---|" * 7 + "\n"
    for name in sorted(n for n in models if n != "teacher"):
        r = models[name]
        rows += (f"| {name} | " + " | ".join(with_ci(r[f"psnr@{k}"]) for k in (1, 2, 4, 8)) +
                 f" | {with_ci(r['gain_8_minus_1'])} | {fmt(r['ssim@1']['mean'], 3)} | {fmt(r['ssim@8']['mean'], 3)} |\n")
    return rows


def goal_rows(evaluation: dict, name: str) -> list[tuple[str, str, str, bool]]:
    """(goal, target, measured on run ``name``, met) for each target of the default-model issue."""
    m, info = evaluation["models"][name], evaluation["information"][name]
    gains = info["gain_bits_per_image"][1:]
    screen_images = evaluation["protocol"]["information_screen_defaults"]["images"]
    return [
        ("held-out PSNR@8", ">= 19 dB", with_ci(m["psnr@8"]) + " dB", m["psnr@8"]["mean"] >= 19),
        ("teacher PSNR", ">= 25 dB", with_ci(evaluation["models"]["teacher"]["psnr"]) + " dB",
         evaluation["models"]["teacher"]["psnr"]["mean"] >= 25),
        ("CE of the codes given the tokens, below their marginal entropy", ">= 1.5 bits/slot",
         f"{fmt(info['tokens_bits_per_slot'])} bits/slot", info["tokens_bits_per_slot"] >= 1.5),
        ("PSNR@8 - PSNR@1", ">= 0.5 dB", with_ci(m["gain_8_minus_1"]) + " dB", m["gain_8_minus_1"]["mean"] >= 0.5),
        ("information gain along the trajectory (Information screen defaults)", "positive at every step",
         f"first {screen_images} crops, steps 2-8: {gains_text(gains)} bits/image; positive at every "
         f"step in {info['groups_all_positive']} of {info['groups']} groups of {screen_images} crops",
         info["groups_all_positive"] == info["groups"]),
        ("leave-one-out MI intervals above zero (screen defaults)", "most slots",
         f"{info['loo_slots_above_zero']} of {info['loo_slots']}", info["loo_slots_above_zero"] > info["loo_slots"] / 2),
    ]


def other_stage3(evaluation: dict) -> list[str]:
    """The stage-3 runs built on the other stage-2 recipe (``stage3_<recipe>``), measured for comparison."""
    return sorted(n for n in evaluation["information"] if n.startswith("stage3_"))


def met_cell(ok: bool) -> str:
    """A goal's "met" cell: a miss stands out in bold."""
    return "yes" if ok else "**no**"


def goals_table(evaluation: dict) -> str:
    """Each target of the default-model issue, measured on the shipped model (and the other recipe's stage 3)."""
    shipped, others = evaluation["shipped"], other_stage3(evaluation)
    rows = goal_rows(evaluation, shipped)
    other_rows = [goal_rows(evaluation, n) for n in others]
    head = f"| goal | target | shipped model (`{shipped}`) | met | " + "".join(f"`{n}` | met | " for n in others)
    table = head.rstrip() + "\n|" + "---|" * (4 + 2 * len(others)) + "\n"
    for i, (g, t, v, ok) in enumerate(rows):
        table += f"| {g} | {t} | {v} | {met_cell(ok)} | " + "".join(f"{r[i][2]} | {met_cell(r[i][3])} | "
                                                                    for r in other_rows)
        table = table.rstrip() + "\n"
    return table


def training_goals_line(evaluation: dict) -> str:
    """One sentence under the goals: the two quality goals as the shipped model meets them on its training photos."""
    train = evaluation.get("training_photos", {}).get(evaluation["shipped"])
    if not train:
        return ""
    teacher = evaluation["training_photos"]["teacher"]["psnr"]["mean"]
    return (f"On crops of its training photos the shipped model reaches PSNR@8 {with_ci(train['psnr@8'])} dB and its "
            f"tokens tell {fmt(train['tokens_bits_per_slot'])} bits/slot; its teacher reaches {fmt(teacher)} dB "
            "there (section \"Training photos against held-out photos\").\n")


def below_teacher(evaluation: dict, name: str) -> tuple[float, float]:
    """How many dB run ``name``'s PSNR@8 lies below the teacher's PSNR, on training crops and on held-out ones."""
    train, held = evaluation["training_photos"], evaluation["models"]
    return (train["teacher"]["psnr"]["mean"] - train[name]["psnr@8"]["mean"],
            held["teacher"]["psnr"]["mean"] - held[name]["psnr@8"]["mean"])


def training_photos_section(evaluation: dict, photos: int) -> str:
    """The held-out numbers beside the same protocol on training crops, each also against the teacher on the same
    crops: what is the photos' difficulty (the teacher's gap too) and what is the tokenizer's own."""
    train = evaluation.get("training_photos")
    if not train:
        return ""
    held, info = evaluation["models"], evaluation["information"]
    teacher_t, teacher_h = train["teacher"]["psnr"], held["teacher"]["psnr"]
    rows = ("| model | PSNR@8, training crops | PSNR@8, held-out | below the teacher, training | below the teacher, "
            "held-out | tokens tell, training (bits/slot) | tokens tell, held-out |\n|---|---|---|---|---|---|---|\n")
    for name in sorted(n for n in train if n in info):
        gap_t, gap_h = below_teacher(evaluation, name)
        rows += (f"| {name} | {with_ci(train[name]['psnr@8'])} | {with_ci(held[name]['psnr@8'])} | {fmt(gap_t)} | "
                 f"{fmt(gap_h)} | {fmt(train[name]['tokens_bits_per_slot'])} | "
                 f"{fmt(info[name]['tokens_bits_per_slot'])} |\n")
    rows += f"| teacher (PSNR) | {with_ci(teacher_t)} | {with_ci(teacher_h)} | - | - | - | - |\n"
    return f"""## Training photos against held-out photos
The same protocol on the first {train['crops']} crops of the training shards (all {photos} training photos; tokens
tell: the first {evaluation['protocol']['information_images']} of them, as many as held out). The teacher row (a
convolutional autoencoder of 4x4-pixel patches, trained on the same photos) says how much harder the held-out photos
are for a model of their local detail; "below the teacher" is what the tokenizer loses on top, on each set.

{rows}"""


def previous_section(evaluation: dict) -> str:
    """The shipped model against the default it replaced, on both builds' held-out crops (same teacher and seeds)."""
    prev = evaluation.get("against_previous")
    if not prev:
        return ""
    previous_set = prev["photo_sets"]["previous held-out"]
    previous_photos = len(photo_set(previous_set).train)
    rows, moved = "", []
    for label, measures in prev["measures"].items():
        old, new = measures["previous"], measures["shipped"]
        for name, r in (("previous", old), ("shipped", new)):
            rows += (f"| {label}: {prev['photo_sets'][label]}, {prev['crops'][label]} crops | {name} | "
                     f"{with_ci(r['psnr@1'])} | {with_ci(r['psnr@8'])} | {fmt(r['tokens_bits_per_slot'])} |\n")
        moved.append(f"on the {label} crops PSNR@8 {new['psnr@8']['mean'] - old['psnr@8']['mean']:+.2f} dB and what the "
                     f"tokens tell {new['tokens_bits_per_slot'] - old['tokens_bits_per_slot']:+.2f} bits/slot")
    return f"""
## Against the previous default
The model this build replaces (`assets/default/sftok` at commit {prev['revision']}: this recipe on the {previous_photos}
training photos of `{previous_set}`) and the shipped one, with the same protocol, teacher and seeds on the same crops:
the previous build's held-out crops and this build's.

| held-out crops | model | PSNR@1 | PSNR@8 | tokens tell (bits/slot) |
|---|---|---|---|---|
{rows}
Shipped minus previous: {'; '.join(moved)}.
"""


def thumbnails_section(evaluation: dict) -> str:
    """Model-free reference points: each crop rebuilt from its own s x s thumbnail, and what the shipped model's
    features tell a linear probe about that thumbnail."""
    refs = evaluation.get("thumbnails")
    if not refs:
        return ""
    sizes = list(refs["held_out"])
    head = "| crops | " + " | ".join(f"{s}x{s}" + (" (mean colour)" if s == "1" else "") for s in sizes) + " |"
    rows = "\n".join(f"| {label} | " + " | ".join(with_ci(refs[key][s]) for s in sizes) + " |"
                     for label, key in (("held-out", "held_out"), ("training", "training")))
    text = f"""## Reference points without a model
PSNR (dB, Y) of each crop rebuilt from its own s x s thumbnail by `analysis.pixel_baselines` ({refs['upsampling']}):
what 3 s^2 numbers per crop already reach; 64 tokens of a 1024-code codebook hold 640 bits.

{head}
|---|{"---|" * len(sizes)}
{rows}
"""
    probes = evaluation.get("thumbnail_probes")
    if probes:
        size = probes["thumbnail"]
        text += f"""
A ridge probe (ridge {probes['ridge']:g}) fit on {probes['train_crops']} training crops reads the {size}x{size} thumbnail off the
shipped model's features; rebuilt from what it reads, the held-out crops score {with_ci(probes['tokens'])} dB from the 64
quantised token vectors and {with_ci(probes['continuous'])} dB from the encoder's continuous outputs, against
{with_ci(refs['held_out']['1'])} dB for each crop's own mean colour and {with_ci(refs['held_out'][str(size)])} dB for its own
{size}x{size} thumbnail.
"""
    return text
