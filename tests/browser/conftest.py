"""A real app and headless Debian Chromium (never a downloaded browser) for the Playwright tests."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest


CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"


@pytest.fixture(scope="session")
def browser_app(tmp_path_factory: pytest.TempPathFactory):
    """(context, url): tiny random model, skimage samples, a workspace with a small dataset and a generator."""
    from tests.app_fixtures import save_tiny_model, write_sample_photos
    from tests.workbench.conftest import launched_app

    root = tmp_path_factory.mktemp("browser")
    model_dir = save_tiny_model(root / "sftok")
    with launched_app(root / "workspace", model_dir, write_sample_photos(root / "samples")) as served:
        yield served


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture()
def page(browser, browser_app):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(browser_app[1])
    page.wait_for_selector("#rec-upload", state="visible")
    yield page
    context.close()


@pytest.fixture()
def screenshot(page):
    """``screenshot(name)`` saves the page (see :func:`save_screenshot`)."""
    return lambda name: save_screenshot(page, name)


def save_screenshot(page, name: str) -> Path:
    """Full-page PNG under test-output/screenshots/ (random-weight models). The Train screenshot is also
    copied to docs/screenshots/; the others there come from scripts/take_screenshots.py (default model)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if name == "train":
        docs = REPO_ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / path.name)
    return path


class _Tracebacks(logging.Handler):
    """Log records that carry a traceback (gradio and the workbench log faults with ``exc_info``)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append(self.format(record))


@pytest.fixture(autouse=True)
def no_server_tracebacks(capfd):
    """Fail a browser test on any traceback the app (same process, server threads) printed or logged while it
    ran: a user's mistake is a message, never a traceback. What was captured is passed through for the report."""
    handler = _Tracebacks()
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        out, err = capfd.readouterr()
        sys.stdout.write(out)
        sys.stderr.write(err)
    printed = [chunk for chunk in (out + err).split("Traceback (most recent call last)")[1:]]
    assert not printed and not handler.seen, (
        f"the server printed {len(printed)} and logged {len(handler.seen)} traceback(s); the first:\n"
        + ("Traceback (most recent call last)" + printed[0] if printed else handler.seen[0])[:3000])


@pytest.fixture(scope="session")
def eval_inception(browser_app) -> Path:
    """A random-init Inception in torch-fidelity's file format, in the browser workspace's ``weights/`` (where the
    Evaluate screen looks); made only for the tests that ask for it (building it costs seconds)."""
    from analysis.fid import INCEPTION_WEIGHTS_FILE
    from tests.analysis.random_inception import save_random_inception

    return save_random_inception(browser_app[0].workspace.root / "weights" / INCEPTION_WEIGHTS_FILE)
