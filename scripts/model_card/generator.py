"""The class-conditional generator's section of the card, from ``scripts/evaluate_default_generator.py``'s report."""
from __future__ import annotations

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
