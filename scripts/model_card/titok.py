"""The embedded TiTok baseline's card (assets/default/TITOK_CARD.md), from scripts/evaluate_default_titok.py's report
and the default SFTok's own evaluation: how the two compare at the same training budget, over seeds."""
from __future__ import annotations

import yaml

from .formatting import fmt, seed_verdict, with_ci
from .sources import ROOT

TITOK_FOLDER = "titok"
CARD_NAME = "TITOK_CARD.md"


def spread_of(report: dict, evaluation: dict, key: str) -> float:
    """The larger seed spread of the two tokenizers for one measure: TiTok's over its seeds, SFTok's over the three
    stage-2 SFVR seeds (stage 1 was trained once; stage 2 is where SFTok's seed-to-seed variation was measured)."""
    titok = report["seeds"][key]["std"] if report.get("seeds") and key in report["seeds"] else 0.0
    sftok = evaluation["seeds"].get("stage2_sfvr", {}).get(key, {}).get("std", 0.0)
    return max(titok, sftok)


def titok_rows(report: dict) -> str:
    rows = ""
    for name, run in report["runs"].items():
        rows += (f"| TiTok `{name}` | {run['seed']} | {run['steps']} | {with_ci(run['psnr@1'])} | "
                 f"{fmt(run['ssim@1']['mean'], 3)} | {run['codebook']['used_codes']} of {run['codebook']['codebook_size']} | "
                 f"{fmt(run['tokens_bits_per_slot']['mean'])} |\n")
    seeds = report.get("seeds")
    if seeds:
        cells = " | ".join(f"{fmt(seeds[k]['mean'], d)} +- {fmt(seeds[k]['std'], d)}"
                           for k, d in (("psnr@1", 2), ("ssim@1", 3), ("used_codes", 0), ("tokens_bits_per_slot", 2)))
        rows += f"| **TiTok, mean +- std over seeds** | {', '.join(str(s) for s in seeds['runs'].values())} | | {cells} |\n"
    return rows


def recipe_steps(*recipes: str) -> str:
    """The steps of a chain of default recipes (configs/default/<recipe>.yaml), as "5000 + 3000"."""
    return " + ".join(str(yaml.safe_load((ROOT / "configs" / "default" / f"{r}.yaml").read_text())["max_steps"])
                      for r in recipes)


def sftok_rows(evaluation: dict) -> str:
    """The default SFTok's runs as its own evaluation measured them (same crops, same protocol)."""
    m, info, cb = evaluation["models"], evaluation["information"], evaluation["codebook"]
    rows = ""
    for name, steps in (("stage1", recipe_steps("stage1")), (evaluation["shipped"], recipe_steps("stage1", "stage2_sfvr", "stage3"))):
        rows += (f"| SFTok `{name}` | 42 | {steps} | {with_ci(m[name]['psnr@1'])} | {fmt(m[name]['ssim@1']['mean'], 3)} | "
                 f"{cb[name]['used_codes']} of {cb[name]['codebook_size']} | {fmt(info[name]['tokens_bits_per_slot'])} |\n")
    sfvr = evaluation["seeds"].get("stage2_sfvr")
    if sfvr:
        tell = sfvr.get("tokens_bits_per_slot")
        rows += (f"| SFTok stage 2 (SFVR), mean +- std over seeds | {', '.join(str(s) for s in sfvr['runs'].values())} | "
                 f"{recipe_steps('stage1', 'stage2_sfvr')} | {fmt(sfvr['psnr@1']['mean'])} +- {fmt(sfvr['psnr@1']['std'])} | | | "
                 f"{fmt(tell['mean'])} +- {fmt(tell['std'])} |\n" if tell else "| | |\n")
    return rows


def comparison_lines(report: dict, evaluation: dict) -> str:
    """SFTok's stage 1 against TiTok at the same recipe and steps, each measure against the seeds' spread."""
    seeds = report.get("seeds")
    if not seeds:
        return "Only one TiTok seed was measured: no claim either way."
    sftok = {"psnr@1": evaluation["models"]["stage1"]["psnr@1"]["mean"],
             "ssim@1": evaluation["models"]["stage1"]["ssim@1"]["mean"],
             "tokens_bits_per_slot": evaluation["information"]["stage1"]["tokens_bits_per_slot"]}
    lines = []
    for key, what, unit, digits in (("psnr@1", "PSNR@1", " dB", 2), ("ssim@1", "SSIM@1", "", 3),
                                    ("tokens_bits_per_slot", "what the tokens tell about the teacher's codes",
                                     " bits/slot", 2)):
        diff = sftok[key] - seeds[key]["mean"]
        spread = spread_of(report, evaluation, key)
        lines.append(f"- {what}: SFTok stage 1 {fmt(sftok[key], digits)}, TiTok {fmt(seeds[key]['mean'], digits)} +- "
                     f"{fmt(seeds[key]['std'], digits)}{unit}; SFTok - TiTok = {fmt(diff, digits)} against a seed spread "
                     f"of {fmt(spread, digits)}: **{seed_verdict(diff, spread, 'SFTok', 'TiTok')}**.")
    used = evaluation["codebook"]["stage1"]
    lines.append(f"- codebook: SFTok stage 1 uses {used['used_codes']} of {used['codebook_size']} codes on these crops, "
                 f"TiTok {fmt(seeds['used_codes']['mean'], 0)} +- {fmt(seeds['used_codes']['std'], 0)}.")
    return "\n".join(lines)


def reading(report: dict, evaluation: dict) -> str:
    """What the equal-budget numbers say and what they do not: compute per step, and where SFTok's steps pay."""
    seeds = report.get("seeds")
    if not seeds:
        return ""
    titok, stage1 = seeds["psnr@1"], evaluation["models"]["stage1"]["psnr@1"]["mean"]
    sfvr = evaluation["seeds"].get("stage2_sfvr")
    later = ""
    if sfvr:
        diff = sfvr["psnr@1"]["mean"] - titok["mean"]
        spread = spread_of(report, evaluation, "psnr@1")
        later = (f" SFTok's multi-step decoding is trained in stage 2: after {recipe_steps('stage1', 'stage2_sfvr')} steps "
                 f"its SFVR runs reach PSNR@1 {fmt(sfvr['psnr@1']['mean'])} +- {fmt(sfvr['psnr@1']['std'])} dB, "
                 f"{fmt(diff)} dB from TiTok's stage 1, {'beyond' if abs(diff) > spread else 'within'} the seed spread "
                 f"({fmt(spread)}).")
    tell = evaluation["information"]["stage1"]["tokens_bits_per_slot"]
    return f"""## Reading the numbers
- At this scale and budget the one-step TiTok's PSNR@1 is {fmt(titok['mean'])} +- {fmt(titok['std'])} dB against SFTok
  stage 1's {fmt(stage1)} dB, and its tokens tell {fmt(seeds['tokens_bits_per_slot']['mean'])} bits/slot about the
  teacher's codes against {fmt(tell)}, while using {fmt(seeds['used_codes']['mean'], 0)} of its
  {report['runs'][report['shipped']]['codebook']['codebook_size']} codes to SFTok's
  {evaluation['codebook']['stage1']['used_codes']}: a Sinkhorn assignment that spreads the tokens over every code
  (SFTok's) is not by itself a code that carries more.
- Equal steps are not equal compute: TiTok's encoder sees four times SFTok's patches, about 1.6x the training time
  per step at equal threads (docs/tokenizers.md).
- SFTok's stage 1 trains only its all-masked single pass, the thing TiTok is built for.{later}
- {len(seeds["runs"])} TiTok seeds and one SFTok stage-1 run: a reading at a tiny scale (64 px, 31 photos), not a verdict on the
  paper's ImageNet models."""


def titok_card(report: dict, evaluation: dict) -> str:
    """TITOK_CARD.md for ``report`` (evaluate_default_titok.py) beside ``evaluation`` (evaluate_default_model.py)."""
    proto, check = report["protocol"], report["protocol"]["same_crops"]
    shipped = report["runs"][report["shipped"]]
    samples = report.get("shipped_samples") or {}
    sample_rows = "".join(f"| {n} | {v:.2f} |\n" for n, v in zip(samples.get("names", []), samples.get("psnr@1", [])))
    teacher = evaluation["models"]["teacher"]["psnr"]
    return f"""# Model card: the embedded TiTok baseline (tiny preset)

A TiTok trained by this project beside the embedded default SFTok, so the workbench compares SFTok with the one-step
tokenizer it improves on without downloading anything: the app offers it as "embedded TiTok (one step)" in every
tokenizer picker, and it is tokenizer B of the A/B screen by default. A demonstration model at 64 x 64 px.

## What it is
- The TiTok architecture at the default SFTok's sizes: ViT encoder (96 wide, 3 deep) -> 64 latent tokens, nearest
  unit codeword among 1024 codes of dim 16 -> ViT decoder (128 wide, 3 deep) that predicts all 256 of the teacher's
  proxy codes in one pass. Its patch size is the teacher's downsampling factor (4: the encoder sees 256 patches; the
  SFTok encoder patches by 8 and sees 64). No pixel head: the argmax codes are rendered by the shipped teacher
  (`teacher/`), as SFTok's stage-1 and stage-2 models are.
- Token budget: 64 tokens x 10 bits = 640 bits per image, the same as the default SFTok.
- Files: `{TITOK_FOLDER}/` (`config.json` + `model.safetensors`, EMA weights) is the `{report['shipped']}` run (seed
  {shipped['seed']}, the first seed, as the default ships its first stage-2 seed); `titok_evaluation.json` holds every
  number below.

## How it was trained
SFTok's stage-1 recipe with the family switched, nothing else changed: `configs/default/stage1.yaml` +
`model_family=titok` (cross-entropy of its one-pass logits against the frozen teacher's codes, plus its quantiser's
codebook and commitment terms), the same photo set, teacher, batch 16, learning-rate schedule and {shipped['steps']}
steps and weight init (PyTorch's layer defaults, `model.weight_init: pytorch`), over seeds. `python
scripts/train_default_model.py` trains them with the rest of the default (`stage1_titok`, `stage1_titok-seed43`,
`stage1_titok-seed44`: the seeds of its stage 2); the runs measured here are the table's. One of them alone:

    python launch_training.py --stage 1 --config configs/default/stage1.yaml --run-dir workspace/default-model/stage1_titok model_family=titok seed=42

| run | seed | steps | torch threads | wall minutes |
|---|---|---|---|---|
{''.join(f"| {n} | {r['seed']} | {r['steps']} | {r['threads']} | {fmt(r['wall_minutes'], 1)} |" + chr(10) for n, r in report['runs'].items())}
Hardware: CPU, 2 cores, no GPU; the wall minutes count active training while other runs shared the cores, so they
compare runs made together, not with the SFTok card's table. A TiTok step costs more than an SFTok step (its encoder
sees four times the patches).

## Against the default SFTok at the same budget
Measured by `scripts/evaluate_default_titok.py` with the default SFTok's protocol on the same {proto['held_out_images']}
held-out crops (photos never trained on): {proto['psnr_ssim']}; {proto['intervals']} in brackets; what the tokens tell
= the teacher codes' marginal entropy minus their cross-entropy given the tokens alone (one pass, first
{proto['information_images']} crops). The crops are checked to be the default's: the shipped SFTok re-measured on them
reaches PSNR@1 {fmt(check['psnr@1_measured'], 3)} dB, its evaluation states {fmt(check['psnr@1_stated'], 3)} dB.
SFTok's rows are its own evaluation's (`evaluation.json`); SFTok stage 1 is the same recipe and steps as TiTok's runs.
The teacher itself reconstructs these crops at {with_ci(teacher)} dB: the ceiling of any model rendered through it.

| model | seed(s) | steps | PSNR@1 (dB) | SSIM@1 | codes used | tokens tell (bits/slot) |
|---|---|---|---|---|---|---|
{titok_rows(report)}{sftok_rows(evaluation)}
At the same recipe and steps (seed spread: the larger of TiTok's over its seeds and SFTok's over its three stage-2
seeds, since its stage 1 was trained once; a difference is claimed only beyond it):

{comparison_lines(report, evaluation)}

The shipped SFTok trained further (stage 2 SFVR, then the stage-3 pixel-head fine-tune); its row shows where the
default ends, not an equal-budget comparison. TiTok's decoder fine-tuning (its second stage) is not implemented here.

{reading(report, evaluation)}

## Shipped samples (`assets/samples`, PSNR@1 in dB at 64 px, each encoded alone)
| sample | PSNR@1 |
|---|---|
{sample_rows}
`tests/test_default_titok.py` reloads `{TITOK_FOLDER}/` strictly and checks these sample numbers and that this card is
the one these numbers write.
"""
