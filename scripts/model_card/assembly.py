"""The whole model card: its fixed description and every measured section, in the order a reader needs them."""
from __future__ import annotations

import json
import platform

import yaml

from .data import data_section, recipe_note
from .findings import MORE_STEPS_FINDING
from .formatting import fmt, with_ci
from .generator import generator_section
from .information import information_table, samples_information
from .quality import (GOALS, goals_table, other_stage3, previous_section, quality_table, thumbnails_section,
                      training_goals_line, training_photos_section)
from .reading import reading
from .recipes import seeds_section
from .runs import code_ce_note, run_minutes, run_names, run_threads, stage3_losses, timing_rows
from .scaling import saved_scaling, scaling_section
from .sources import ASSETS, ROOT, CardSources, photo_count
from .titok import CARD_NAME as TITOK_CARD, TITOK_FOLDER


def samples_table(samples: dict) -> str:
    """The shipped samples' PSNR after 1 and 8 steps, one row each and their mean (none before they were measured)."""
    rows = "".join(f"| {n} | {a:.2f} | {b:.2f} |\n" for n, a, b in
                   zip(samples.get("names", []), samples.get("psnr@1", []), samples.get("psnr@8", [])))
    if samples.get("names"):
        mean1, mean8 = (sum(samples[k]) / len(samples[k]) for k in ("psnr@1", "psnr@8"))
        rows += f"| mean | {mean1:.2f} | {mean8:.2f} |\n"
    return rows


def comparison_files(evaluation: dict) -> str:
    """The shipped twins from the other stage-2 recipe (``sftok-<recipe>/``, exported beside ``sftok/``)."""
    lines = []
    for run in other_stage3(evaluation):
        folder = f"sftok-{run.removeprefix('stage3_')}"
        if (ASSETS / "default" / folder).is_dir():
            lines.append(f"\n- Comparison: `{folder}/` is the `{run}` run, the same stage 3 from the other stage-2 recipe, "
                         "shipped so SFVR against vanilla can be measured on the screens without training (the app "
                         "offers it as \"embedded comparison\", Model B of the Information screen by default).")
    if (ASSETS / "default" / TITOK_FOLDER).is_dir():
        lines.append(f"\n- Baseline: `{TITOK_FOLDER}/` is a TiTok trained by this SFTok's stage-1 recipe on the same data and "
                     f"teacher (the first of its seeds ships), compared with SFTok at the same budget in `{TITOK_CARD}`.")
    return "".join(lines)


def card(evaluation: dict, sources: CardSources) -> str:
    """MODEL_CARD.md for ``evaluation`` (evaluate_default_model.py's report) and the runs and dataset in ``sources``."""
    m, cb = evaluation["models"], evaluation["codebook"]
    proto = evaluation["protocol"]
    shipped = evaluation["shipped"]
    runs, data = sources.runs, sources.data
    timing = {name: run_minutes(runs, name) for name in run_names(runs)}
    samples = evaluation.get("shipped_samples", {})
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
  `evaluation.json`, `scaling.json`, `generator_evaluation.json`, `generator_samples.png`.{comparison_files(evaluation)}

## Data
{data_section(proto, data)}

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
{timing_rows(runs, timing)}
Hardware: {platform.machine()} CPU, 2 cores, no GPU; two runs side by side with 1 torch thread each, a run that starts
alone with both; the wall minutes count active training only. Batch 16, AdamW, warm-up + cosine, EMA 0.999, gradient clipping 1.0.
Stage 2 starts from stage 1 with the decoder's code table redrawn at N(0, 0.02) and a 2-D sine-cosine grid added to its
slot positions (`decoder_init`, see "Reading the numbers"), at lr 1e-3.
Stage 3 used {stage3_losses(stage3)}{code_ce_note(stage3)}; its LPIPS term was off because the VGG16 backbone weights
(`vgg16-397923af.pth`) are not on this machine and nothing is downloaded.
{recipe_note(data)}
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
{training_photos_section(evaluation, photo_count(data))}
{thumbnails_section(evaluation)}
{scaling_section(saved_scaling(), timing.get('stage1', (0, None))[1], run_threads(runs, 'stage1'))}
## SFVR against vanilla (stage 2)
{seeds_section(evaluation['seeds'])}

## Reading the numbers
{reading(evaluation, sources)}

{MORE_STEPS_FINDING}

## Shipped samples (`assets/samples`, PSNR in dB at 64 px, `{shipped}`, each encoded alone, seed 0)
| sample | 1 step | 8 steps |
|---|---|---|
{samples_table(samples)}
{samples_information(samples)}

The test `tests/test_default_model.py` reloads the shipped files strictly and checks these numbers and the code
information measured on these samples.

{generator_section(json.loads((ASSETS / "default" / "generator_evaluation.json").read_text()), timing.get("generator"))}"""
