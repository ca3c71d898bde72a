"""The scaling measurement behind the card's "How stage 1 scales" section: photo subsets, slopes, the section."""
from __future__ import annotations

import math

import pytest

from tests.test_default_model import card_module, load_script
from tests.trainers.shard_fixtures import write_shards
from trainers.data.loaders import make_eval_loader


@pytest.fixture(scope="module")
def scaling():
    return load_script("measure_default_scaling")


@pytest.fixture(scope="module")
def card_scaling():
    return card_module("scaling")


def test_photo_subsets_are_nested_and_fixed(scaling) -> None:
    ids = list(range(19))
    order = scaling.photo_order(ids)
    assert sorted(order) == ids and order != ids
    assert order == scaling.photo_order(list(range(19)))  # the same seed gives the same subsets on any machine
    assert set(order[:5]) < set(order[:10])


def test_subset_shard_keeps_exactly_the_chosen_photos(scaling, tmp_path) -> None:
    shards = write_shards(tmp_path / "src", "train", count=40, per_shard=16)  # labels cycle 0..3
    out = tmp_path / "subset" / "train-000000.tar"
    assert scaling.subset_shard(shards, {1, 3}, out) == 20
    labels, pixels = [], 0
    for batch in make_eval_loader(str(out), 64, 8):
        labels += batch["class_id"].tolist()
        pixels += batch["image"].shape[0]
    assert sorted(set(labels)) == [1, 3] and pixels == 20
    assert not out.with_suffix(".partial").exists()


def test_doubling_rates_known_answer(card_scaling) -> None:
    points = [(3200, 0.65), (800, 0.2), (1600, 0.35)]  # unsorted on purpose
    rates = card_scaling.doubling_rates(points)
    assert [(a, b) for a, b, _ in rates] == [(800, 1600), (1600, 3200)]
    assert [r for *_, r in rates] == pytest.approx([0.15, 0.30])
    assert card_scaling.doublings_needed(points, 1.25) == pytest.approx(2.0)  # (1.25 - 0.65) / 0.30
    assert card_scaling.doublings_needed([(800, 0.5), (1600, 0.4)], 1.5) is None  # falling: no amount of doubling helps


def _run(steps: int, photos: int, tell: float, psnr8: float, own_tell: float, seed: int = 42,
         repeat_of: str | None = None) -> dict:
    def stat(v: float) -> dict:
        return {"mean": v, "ci_low": v - 0.1, "ci_high": v + 0.1}
    return {"steps": steps, "photos": photos, "seed": seed, **({"repeat_of": repeat_of} if repeat_of else {}),
            "held_out": {"psnr@8": stat(psnr8), "tokens_bits_per_slot": tell},
            "training": {"psnr@8": stat(psnr8 + 3), "tokens_bits_per_slot": own_tell}}


def _section(card_scaling, runs: dict, minutes: float | None = 30.0) -> str:
    protocol = {"crops": 256, "config": "configs/default/stage1.yaml"}
    return card_scaling.scaling_section({"protocol": protocol, "runs": runs}, minutes)


def test_scaling_section_reads_the_runs(card_scaling) -> None:
    runs = {"steps-800": _run(800, 19, 0.2, 13.0, 0.7), "steps-2000": _run(2000, 19, 0.6, 15.0, 1.2),
            "steps-800-seed43": _run(800, 19, 0.15, 13.5, 0.6, seed=43, repeat_of="steps-800"), "stage1": _run(5000, 19, 0.75, 14.8, 1.5),
            "photos-5": _run(2000, 5, 0.2, 11.3, 1.35), "photos-10": _run(2000, 10, 0.4, 14.8, 1.3)}
    text = _section(card_scaling, runs)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert [row.split(" | ")[0] for row in rows] == ["| photos-5", "| photos-10", "| steps-800", "| steps-800-seed43",
                                                     "| steps-2000", "| stage1"]
    assert "| photos-5 | 2000 | 5 | 42 | 11.30 [11.20, 11.40] | 0.20 | 14.30 [14.20, 14.40] | 1.35 |" in rows
    flat = " ".join(text.split())
    r = 0.4 / math.log2(2.5)  # 800 -> 2000 steps: +0.40 bits/slot over 1.32 doublings
    assert f"changed by {r:+.2f} bits/slot from 800 to 2000 and {0.15 / math.log2(2.5):+.2f} from 2000 to 5000 steps" in flat
    assert f"by +0.20 bits/slot from 5 to 10 and {0.2 / math.log2(1.9):+.2f} from 10 to 19 photos" in flat
    assert "beyond held-out ones went 1.15, 0.90, 0.60 bits/slot with 5, 10, 19 photos" in flat
    assert "(800 steps, seed 43) says how far a single run moves there: 0.05 bits/slot and 0.50 dB" in flat
    assert "one setting again with another seed" in flat and "the first 5 and 10 of a seeded shuffle" in flat
    steps_needed = (1.5 - 0.75) / (0.15 / math.log2(2.5))
    assert f"needs about {steps_needed:.1f} more doublings of the steps ({2 ** steps_needed:,.0f} times" in flat
    assert "and that rate is falling" in flat
    photos_needed = (1.5 - 0.6) / (0.2 / math.log2(1.9))
    assert f"about {photos_needed:.1f} doublings of the photos (about {19 * 2 ** photos_needed:.0f} photos" in flat
    assert "distinct photos move this recipe further than steps do" in flat
    assert card_scaling.scaling_section(None, 30.0) == ""
    summary = " ".join(card_scaling.scaling_summary({"protocol": {}, "runs": runs}).split())
    assert summary.startswith("Stage 1's tokens tell 0.20 / 0.40 / 0.60 bits/slot about held-out codes after 2000 steps on "
                              "5 / 10 / 19 photos, and 0.20 / 0.60 / 0.75 after 800 / 2000 / 5000 steps on 19 photos")
    assert card_scaling.scaling_summary(None) == ""


def test_scaling_section_says_when_steps_do_not_help(card_scaling) -> None:
    runs = {"steps-800": _run(800, 19, 0.8, 13.0, 1.0), "stage1": _run(5000, 19, 0.7, 13.0, 1.5),
            "photos-5": _run(800, 5, 0.3, 12.0, 2.5)}
    flat = " ".join(_section(card_scaling, runs, None).split())
    assert "More steps did not raise what the tokens tell" in flat
    assert "doublings of the photos" in flat and "further than steps do" in flat
    assert "another seed" not in flat and "the first 5 of a seeded shuffle" in flat


def test_plan_follows_the_recipe(scaling) -> None:
    runs = scaling.plan({"train_class_ids": list(range(19))})
    assert set(runs) == {"steps-800", "steps-2000", "steps-5000", "photos-5", "photos-10", "photos-31",
                         "steps-800-seed43", "steps-2000-seed43", "stage1"}
    assert runs["steps-2000-seed43"] == {**runs["steps-2000"], "seed": 43, "repeat_of": "steps-2000"}
    assert (runs["stage1"]["steps"], runs["stage1"]["seed"]) == (5000, 42)  # configs/default/stage1.yaml
    # the recipe's stage 1 and the next point on the photos axis train on the wider set, a superset of the 19
    assert runs["stage1"]["photos"] == runs["photos-31"]["photos"] == list(range(31))
    assert runs["photos-31"]["steps"] == runs["photos-10"]["steps"] and runs["photos-31"]["photo_set"] == "packages-v3"
    assert runs["steps-5000"]["photos"] == list(range(19)) and "packages-v2" in runs["steps-5000"]["shards"]
    assert set(runs["photos-5"]["photos"]) < set(runs["photos-10"]["photos"]) and len(runs["photos-10"]["photos"]) == 10
    assert runs["steps-800-seed43"] == {**runs["steps-800"], "seed": 43, "repeat_of": "steps-800"}


def test_a_wider_photo_set_extends_the_photos_axis(card_scaling) -> None:
    runs = {"steps-800": _run(800, 19, 0.2, 13.0, 0.7), "steps-2000": _run(2000, 19, 0.6, 15.0, 1.2),
            "steps-2000-seed43": _run(2000, 19, 0.45, 14.6, 1.0, seed=43, repeat_of="steps-2000"),
            "steps-5000": _run(5000, 19, 0.75, 14.8, 1.5), "photos-5": _run(2000, 5, 0.2, 11.3, 1.35),
            "photos-10": _run(2000, 10, 0.4, 14.8, 1.3),
            "photos-31": {**_run(2000, 31, 0.62, 15.5, 1.1), "photo_set": "packages-v3"},
            "stage1": {**_run(5000, 31, 1.0, 15.9, 1.3), "photo_set": "packages-v3"}}
    axes = card_scaling.ScalingAxes.of(runs)
    assert (axes.full, axes.budget) == (19, 2000)  # 19 photos at three budgets; 2000 steps on four photo counts
    assert [r["photos"] for r in axes.by_photos] == [5, 10, 19, 31] and [r["steps"] for r in axes.by_steps] == [800, 2000, 5000]
    assert sorted(axes.photo_series) == [2000, 5000] and [r["photos"] for r in axes.photo_series[5000]] == [19, 31]
    flat = " ".join(_section(card_scaling, runs).split())
    assert "the first 5 and 10 of a seeded shuffle" in flat
    assert "and on all 31 training photos of the wider photo set packages-v3" in flat
    assert f"{0.02 / math.log2(31 / 19):+.2f} from 19 to 31 photos" in flat
    # 0.15 bits/slot between two seeds at 2000 steps: the 19 -> 31 change there (+0.02) is within it, 10 -> 19 is not
    assert "(2000 steps, seed 43) says how far a single run moves there: 0.15 bits/slot" in flat
    assert "At 2000 steps the change from 19 to 31 photos lies within that spread." in flat
    rate = 0.25 / math.log2(31 / 19)  # the extrapolation takes the recipe's 5000 steps, where 19 -> 31 photos gave +0.25
    assert (f"At 5000 steps, 19 and 31 photos tell 0.75 and 1.00 bits/slot ({rate:+.2f} bits/slot per doubling). From 19 "
            "to 31 photos that is +0.25 bits/slot on the held-out set, more than the largest seed spread measured (0.15).") in flat
    needed = (1.5 - 1.0) / rate
    assert f"about {needed:.1f} doublings of the photos (about {31 * 2 ** needed:.0f} photos at 5000 steps)" in flat
    summary = " ".join(card_scaling.scaling_summary({"protocol": {}, "runs": runs}).split())
    assert "and 0.75 / 1.00 after 5000 steps on 19 / 31 photos" in summary


def test_the_wider_held_out_set_gets_its_own_columns(card_scaling) -> None:
    runs = {"steps-800": _run(800, 19, 0.2, 13.0, 0.7), "steps-2000": _run(2000, 19, 0.6, 15.0, 1.2),
            "photos-5": _run(2000, 5, 0.2, 11.3, 1.35)}
    runs["steps-2000"]["held_out_wide"] = {"psnr@8": {"mean": 17.0, "ci_low": 16.5, "ci_high": 17.5},
                                           "tokens_bits_per_slot": 0.55}
    protocol = {"crops": 256, "config": "configs/default/stage1.yaml", "held_out": "5 photos",
                "held_out_wide": "the first 256 held-out crops of photo set packages-v3, 35 photos"}
    text = card_scaling.scaling_section({"protocol": protocol, "runs": runs}, 30.0)
    lines = text.splitlines()
    assert next(line for line in lines if line.startswith("| run")).endswith(
        "| wider held-out PSNR@8 | wider held-out tokens tell |")
    assert "| steps-2000 | 2000 | 19 | 42 | 15.00 [14.90, 15.10] | 0.60 | 18.00 [17.90, 18.10] | 1.20 | 17.00 [16.50, 17.50] | 0.55 |" in lines
    assert "| photos-5 | 2000 | 5 | 42 | 11.30 [11.20, 11.40] | 0.20 | 14.30 [14.20, 14.40] | 1.35 | - | - |" in lines
    flat = " ".join(text.split())
    assert "on 256 held-out crops (5 photos)" in flat and "The last two columns measure the same on the first 256" in flat
