"""The first-batch time estimate the Information and Codebook screens show before long work."""
import pytest

from workbench.services.budget import Budget, format_seconds


def test_first_batch_of_8_images_in_2_s_gives_64_s_for_256_and_240_per_minute():
    budget = Budget(done=8, seconds=2.0, total=256)
    assert budget.seconds_per_item == 0.25
    assert budget.total_seconds == 64.0
    assert budget.remaining_seconds == 62.0
    assert budget.fit() == 240
    assert budget.fit(10.0) == 40
    assert budget.text() == "about 64 s for all 256 images; about 240 images fit a minute"


def test_long_runs_read_in_minutes_and_hours():
    # SFTok-L-like: 32 images of 20000 in 9.6 s -> 0.3 s each, 6000 s for all, 200 fit a minute
    budget = Budget(done=32, seconds=9.6, total=20_000)
    assert budget.total_seconds == pytest.approx(6000.0)
    assert budget.fit() == 200
    assert budget.text() == "about 100 min for all 20000 images; about 200 images fit a minute"
    assert format_seconds(7200.0) == "2.0 h" and format_seconds(119.4) == "119 s"


def test_rows_as_the_unit_and_a_batch_that_took_no_time():
    assert Budget(128, 3.0, 256, "image-slot rows").text() == (
        "about 6 s for all 256 image-slot rows; about 2560 image-slot rows fit a minute")
    assert Budget(4, 0.0, 16).fit() == 16


@pytest.mark.parametrize("done, seconds, total", [(0, 1.0, 8), (9, 1.0, 8), (1, -1.0, 8), (1, float("nan"), 8)])
def test_impossible_first_batches_are_refused(done, seconds, total):
    with pytest.raises(ValueError, match="budget"):
        Budget(done, seconds, total)
