"""The card's SFVR-against-vanilla verdicts: a difference is claimed only when it exceeds the seeds' spread."""
from __future__ import annotations

import pytest

from tests.test_default_model import load_script


@pytest.fixture(scope="module")
def scripts():
    return load_script("evaluate_default_model"), load_script("export_default_model")


def info(tokens: float, curve: tuple[float, float, float], loo: float) -> dict:
    return {"tokens_bits_per_slot": tokens, "ce_hidden_by_reveal_bits": list(curve), "loo_mean_bits": loo}


def test_seed_verdicts_follow_the_spread(scripts) -> None:
    evaluate, export = scripts
    psnr = {f"psnr@{k}": {"mean": 15.0} for k in (1, 2, 4, 8)} | {"gain_8_minus_1": {"mean": 0.0}}
    runs = {  # vanilla reads revealed codes (its curve falls by ~0.7 bits), SFVR does not; tokens tell the same
        "s": info(0.80, (6.6, 6.6, 6.6), 0.00), "s-seed43": info(0.81, (6.6, 6.6, 6.7), 0.01),
        "s-seed44": info(0.79, (6.6, 6.6, 6.5), -0.01),
        "v": info(0.80, (6.6, 6.0, 5.9), 0.20), "v-seed43": info(0.82, (6.6, 6.0, 5.8), 0.30),
        "v-seed44": info(0.78, (6.6, 6.1, 6.0), 0.25),
    }
    per_model = {name: psnr | evaluate.code_headline(i) for name, i in runs.items()}
    assert per_model["v"]["reveal_drop_bits"]["mean"] == pytest.approx(0.7)
    seeds = {"stage2_sfvr": evaluate.across_seeds(per_model, {"s": 42, "s-seed43": 43, "s-seed44": 44}),
             "stage2_vanilla": evaluate.across_seeds(per_model, {"v": 42, "v-seed43": 43, "v-seed44": 44})}
    assert seeds["stage2_vanilla"]["reveal_drop_bits"]["std"] == pytest.approx(0.1)
    text = export.seeds_section(seeds)
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "**vanilla is higher**" in lines["- how much revealing 90% of the teacher's codes lowers the cross-entropy "
                                            "of the rest"]
    assert "**vanilla is higher**" in lines["- leave-one-out MI"]
    assert "**no difference can be claimed**" in lines["- what the tokens tell about the teacher's codes"]
    assert "**no difference can be claimed**" in lines["- PSNR@8"]  # equal means, zero spread: no claim


def test_training_photo_numbers_sit_beside_the_held_out_ones(scripts) -> None:
    _, export = scripts

    def stat(mean: float) -> dict:
        return {"mean": mean, "ci_low": mean - 0.5, "ci_high": mean + 0.5}

    evaluation = {
        "shipped": "stage3", "protocol": {"information_images": 64},
        "models": {"stage3": {"psnr@8": stat(16.0)}, "teacher": {"psnr": stat(25.0)}},
        "information": {"stage3": {"tokens_bits_per_slot": 0.75}},
        "training_photos": {"crops": 256, "teacher": {"psnr": stat(26.0)},
                            "stage3": {"psnr@8": stat(19.5), "tokens_bits_per_slot": 1.5}},
    }
    section = export.training_photos_section(evaluation, photos=19)
    row = next(line for line in section.splitlines() if line.startswith("| stage3 |"))
    assert row == "| stage3 | 19.50 [19.00, 20.00] | 16.00 [15.50, 16.50] | -3.50 | 1.50 | 0.75 |"
    assert "| teacher (PSNR) | 26.00 [25.50, 26.50] | 25.00 [24.50, 25.50] | -1.00 | - | - |" in section
    assert "first 256 crops" in section and "from 19 photos" in section
    assert "PSNR@8 19.50 [19.00, 20.00] dB" in export.training_goals_line(evaluation)
    bullet = export.limits_bullet(evaluation, photos=19)
    assert "trained on 19 photos generalises" in bullet and "19.50 dB" in bullet and "16.00 dB" in bullet
    # an evaluation from before the measurement existed: no section, no sentence, the old reading
    del evaluation["training_photos"]
    assert export.training_photos_section(evaluation, photos=19) == "" == export.training_goals_line(evaluation)
    assert export.limits_bullet(evaluation, photos=19).startswith("- What limits quality is the size")
