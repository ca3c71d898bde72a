"""Drive the app in headless Chromium: upload, scrub, generate, launch a training job and watch its curve."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def _src(page, selector: str) -> str:
    return page.locator(f"{selector} img").first.get_attribute("src") or ""


def test_upload_and_scrub(page, screenshot, tmp_path):
    import skimage.data
    from PIL import Image

    path = tmp_path / "rocket.png"
    Image.fromarray(skimage.data.rocket()).save(path)
    page.locator("#rec-upload input[type=file]").set_input_files(str(path))
    page.wait_for_function("document.querySelector('#rec-status').innerText.includes('resized to 64 x 64')")
    page.wait_for_function("document.querySelector('#rec-info').innerText.includes('Step 8 / 8')")
    page.wait_for_selector("#rec-curve .scatterlayer .trace path.js-line")
    last = _src(page, "#rec-preview")
    assert last
    screenshot("reconstruct")
    page.locator("#rec-step input[type=range]").fill("2")
    page.wait_for_function("document.querySelector('#rec-info').innerText.includes('Step 2 / 8')")
    page.wait_for_function(f"document.querySelector('#rec-preview img').getAttribute('src') !== {last!r}")
    assert _src(page, "#rec-grid") != ""
    tokens = page.locator("#rec-tokens .tok")
    assert tokens.count() == 64
    screenshot("reconstruct-step2")


def test_bad_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image at all")
    page.locator("#rec-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text(re.compile("not an image")).first.wait_for()


def test_generate_screen(page, screenshot):
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-run").click()
    page.wait_for_function("document.querySelector('#gen-info').innerText.includes('Step 8 / 8')")
    page.wait_for_selector("#gen-curve .scatterlayer .trace path.js-line")
    screenshot("generate")


def test_train_job_curve_appears(page, screenshot, browser_app):
    page.get_by_role("tab", name="Train").click()
    dataset = page.locator("#train-dataset input")
    dataset.click()
    dataset.fill("datasets/small")
    dataset.press("Enter")
    steps = page.locator("#train-steps input")
    steps.fill("30")
    page.locator("#train-launch").click()
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('Queued')", timeout=120_000)
    # the timer refreshes the curves; a drawn line appears once the run logs its first step
    page.wait_for_selector("#train-curves .scatterlayer .trace path.js-line", timeout=150_000)
    page.wait_for_function("document.querySelector('#train-jobs').innerText.includes('running') || "
                           "document.querySelector('#train-jobs').innerText.includes('done')")
    screenshot("train")
    ctx = browser_app[0]
    for run in ctx.jobs.store.list_runs():
        if run.status in ("queued", "running"):
            ctx.jobs.cancel(run.id)
