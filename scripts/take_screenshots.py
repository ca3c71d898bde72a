#!/usr/bin/env python
"""README screenshots of the app on the embedded default model and generator (docs/screenshots/).

Starts the real app on 127.0.0.1 over a throw-away workspace (with a small default dataset for the
Codebook and Information screens) and drives headless Debian Chromium
(`make browser`) through Reconstruct (last step and step 2), Codebook, Information and Generate.
The Train screenshot comes from the browser test, which runs a real job (tests/browser).

Usage: python scripts/take_screenshots.py [--out docs/screenshots]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"


def shoot(url: str, out: Path, sample: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        page.set_default_timeout(180_000)
        page.goto(url)
        page.wait_for_selector("#rec-upload", state="visible")

        def save(name: str) -> None:
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"  {out / name}.png", flush=True)

        page.locator("#rec-upload input[type=file]").set_input_files(str(sample))
        page.wait_for_function("document.querySelector('#rec-info')?.innerText.includes('Step 8 / 8')")
        page.wait_for_selector("#rec-curve .scatterlayer .trace path.js-line")
        save("reconstruct")
        page.locator("#rec-scrubber input[type=range]").fill("2")
        page.wait_for_function("document.querySelector('#rec-info').innerText.includes('Step 2 / 8')")
        page.wait_for_timeout(500)
        save("reconstruct-step2")

        page.get_by_role("tab", name="A/B").click()  # B starts on the embedded TiTok: SFTok against it, step 2
        page.locator("#ab-upload input[type=file]").set_input_files(str(sample))
        page.wait_for_function("(document.querySelector('#ab-status')?.innerText || '').includes('B: embedded TiTok')")
        page.wait_for_selector("#ab-curve .scatterlayer .trace path.js-line")
        page.locator("#ab-scrubber input[type=range]").fill("2")
        page.wait_for_function("document.querySelector('#ab-scrubber .ab-now').textContent === '2'")
        page.wait_for_timeout(500)
        save("ab")

        page.get_by_role("tab", name="Codebook").click()
        page.locator("#cb-run").click()
        page.wait_for_selector("#cb-umap .scatterlayer .trace .point", timeout=900_000)  # first UMAP fit compiles
        page.locator("#cb-top [data-testid='cell-0-0']").click()
        page.wait_for_selector("#cb-examples img")
        page.locator("#cb-usage").scroll_into_view_if_needed()
        save("codebook")

        page.get_by_role("tab", name="Information").click()
        page.locator("#info-run").click()
        page.wait_for_selector("#info-mi .barlayer .point", timeout=300_000)  # with the comparison: two models
        page.wait_for_selector("#info-gap .scatterlayer .trace path.js-line", timeout=60_000)
        save("information")

        page.get_by_role("tab", name="Generate").click()
        box = page.locator("#gen-class input[type=number]")
        box.fill("9")  # brick
        box.press("Enter")
        page.locator("#gen-run").click()
        page.wait_for_function("document.querySelector('#gen-info')?.innerText.includes('Step 8 / 8')")
        page.wait_for_selector("#gen-curve .scatterlayer .trace path.js-line")
        save("generate")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--sample", type=Path, default=ROOT / "assets" / "samples" / "coffee.png")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: run `make browser`")
    from workbench.services.model_registry import DEFAULT_COMPARISON_DIR, DEFAULT_TITOK_DIR
    from workbench.ui import AppContext, ServeOptions, build_app, launch_app

    args.out.mkdir(parents=True, exist_ok=True)
    from trainers.data.default_dataset import build_default_dataset

    with tempfile.TemporaryDirectory() as workspace:
        # Codebook and Information read a workspace dataset: the default one, small (its val split = held-out photos)
        build_default_dataset(Path(workspace) / "datasets" / "default", image_size=64, train_crops=64, val_crops=256)
        ctx = AppContext.create(workspace, comparison_dir=DEFAULT_COMPARISON_DIR,  # as app.py with the default
                                titok_dir=DEFAULT_TITOK_DIR)
        demo = build_app(ctx)
        _, url, _ = launch_app(demo, ctx, ServeOptions(), block=False)
        try:
            shoot(url, args.out, args.sample)
        finally:
            demo.close()
            ctx.close(cancel_running=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
