"""The card's SFVR-against-vanilla verdicts: a difference is claimed only when it exceeds the seeds' spread."""
from __future__ import annotations

import pytest

from tests.test_default_model import card_module, load_script


@pytest.fixture(scope="module")
def evaluate():
    return load_script("evaluate_default_model")


@pytest.fixture(scope="module")
def card():
    """The card's modules these tests read, by the part of the card they write."""
    return {name: card_module(name) for name in ("information", "quality", "reading", "recipes")}


def info(tokens: float, curve: tuple[float, float, float], loo: float) -> dict:
    return {"tokens_bits_per_slot": tokens, "ce_hidden_by_reveal_bits": list(curve), "loo_mean_bits": loo}


def test_seed_verdicts_follow_the_spread(evaluate, card) -> None:
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
    text = card["recipes"].seeds_section(seeds)
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "**vanilla is higher**" in lines["- how much revealing 90% of the teacher's codes lowers the cross-entropy "
                                            "of the rest"]
    assert "**vanilla is higher**" in lines["- leave-one-out MI"]
    assert "**no difference can be claimed**" in lines["- what the tokens tell about the teacher's codes"]
    assert "**no difference can be claimed**" in lines["- PSNR@8"]  # equal means, zero spread: no claim


def test_training_photo_numbers_sit_beside_the_held_out_ones(card) -> None:
    quality, reading = card["quality"], card["reading"]

    def stat(mean: float) -> dict:
        return {"mean": mean, "ci_low": mean - 0.5, "ci_high": mean + 0.5}

    evaluation = {
        "shipped": "stage3", "protocol": {"information_images": 64},
        "models": {"stage3": {"psnr@8": stat(16.0)}, "teacher": {"psnr": stat(25.0)}},
        "information": {"stage3": {"tokens_bits_per_slot": 0.75}},
        "training_photos": {"crops": 256, "teacher": {"psnr": stat(26.0)},
                            "stage3": {"psnr@8": stat(19.5), "tokens_bits_per_slot": 1.5}},
    }
    section = quality.training_photos_section(evaluation, photos=19)
    row = next(line for line in section.splitlines() if line.startswith("| stage3 |"))
    # 26.0 - 19.5 below the teacher on training crops, 25.0 - 16.0 on held-out ones
    assert row == "| stage3 | 19.50 [19.00, 20.00] | 16.00 [15.50, 16.50] | 6.50 | 9.00 | 1.50 | 0.75 |"
    assert "| teacher (PSNR) | 26.00 [25.50, 26.50] | 25.00 [24.50, 25.50] | - | - | - | - |" in section
    assert "first 256 crops" in section and "all 19 training photos" in section
    line = quality.training_goals_line(evaluation)
    assert "PSNR@8 19.50 [19.00, 20.00] dB" in line and "teacher reaches 26.00 dB" in line
    assert reading.limits_bullet(evaluation, photos=19).startswith("- What limits quality is the size")  # no references
    evaluation["thumbnails"] = {"held_out": {"1": stat(16.5), "2": stat(18.5)}, "training": {"1": stat(19.9), "2": stat(21.0)},
                                "upsampling": "area down, bicubic up"}
    evaluation["thumbnail_probes"] = {"thumbnail": 2, "ridge": 10.0, "train_crops": 4096, "tokens": stat(16.2),
                                      "continuous": stat(16.4)}
    bullet = reading.limits_bullet(evaluation, photos=19)
    assert "own mean colour scores 16.50 dB, from a 2x2 thumbnail (12 numbers) 18.50 dB" in bullet
    assert "shipped model scores 16.00\n  dB (19.50 on training crops, whose mean colour alone scores 19.90)" in bullet
    assert "(16.20 dB from the tokens, 16.40 from" in bullet and "its 19 training photos" in bullet
    assert "loses 1.00 dB on them too (26.00 -> 25.00)" in bullet
    assert "2.50 dB further behind on the held-out photos (6.50 and 9.00 dB)" in bullet
    evaluation["models"]["stage3"]["psnr@8"] = stat(18.0)  # 7.0 below the teacher held out, 6.5 on training crops
    assert "about as far behind on both sets (6.50 and 7.00 dB)" in reading.limits_bullet(evaluation, photos=19)
    section = quality.thumbnails_section(evaluation)
    assert "| held-out | 16.50 [16.00, 17.00] | 18.50 [18.00, 19.00] |" in section and "1x1 (mean colour)" in section
    assert "16.20 [15.70, 16.70] dB from the 64\nquantised token vectors" in section
    # an evaluation from before the measurement existed: no section, no sentence, the old reading
    for key in ("training_photos", "thumbnails", "thumbnail_probes"):
        evaluation.pop(key, None)
    assert quality.training_photos_section(evaluation, photos=19) == "" == quality.training_goals_line(evaluation)
    assert quality.thumbnails_section(evaluation) == ""
    assert reading.limits_bullet(evaluation, photos=19).startswith("- What limits quality is the size")


def test_the_information_table_shows_the_teacher_revealed_gain_and_older_evaluations_say_not_measured(card) -> None:
    information = card["information"]
    base = {"ce_given_tokens_bits": 6.0, "ce_ci": [5.9, 6.1], "marginal_entropy_bits": 7.5, "tokens_bits_per_slot": 1.5,
            "gain_bits_per_image": [0.0, -0.4, 0.2], "groups_all_positive": 1, "groups": 8, "loo_slots_above_zero": 3,
            "loo_slots": 32, "ce_hidden_by_reveal_bits": [6.0, 5.5, 5.0]}
    new = base | {"teacher_gain_bits_per_image": [0.0, 3.25, 7.5], "teacher_groups_all_positive": 6}
    table = information.information_table({"new": new, "old": base})
    rows = {line.split(" | ")[0]: line.split(" | ") for line in table.splitlines() if line.startswith("| new") or
            line.startswith("| old")}
    assert rows["| new"][6:8] == ["3.2, 7.5", "6 of 8"]  # steps 2-8, then its groups
    assert rows["| old"][6:8] == ["not measured", "-"]
    assert all(len(cells) == len(table.splitlines()[0].split(" | ")) for cells in rows.values())
    text = information.trajectory_bound(new | {"teacher_gain_bits_per_image_all": [0.0, 2.04, 6.0]}, 64)
    assert "Jensen's inequality" in text and "2.0, 6.0 bits/image at steps 2-8 (mean over 64 crops)" in text
    assert "positive at every step in 6 of 8 groups" in text
    assert "teacher's codes at the same" not in information.trajectory_bound(base, 64)


def test_the_sfvr_computation_saving_is_read_off_the_seeds(card) -> None:
    saving = card["reading"].computation_saving
    seeds = {"stage2_sfvr": {"gain_8_minus_1": {"mean": 0.1234, "std": 0.02, "values": [0.1, 0.12, 0.15]}}}
    assert saving({"seeds": seeds}) == ("; at this size that saving is worth 0.12 dB "
                                        "(PSNR@8 - PSNR@1 of the SFVR seeds above)")
    assert saving({"seeds": {}}) == "" and saving({}) == ""  # one seed evaluated: no number to quote
