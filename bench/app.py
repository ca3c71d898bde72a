"""Server time of the Reconstruct screen on the tiny preset, CPU (targets: upload -> all steps <= 1 s,
one scrubber move <= 30 ms).

Prints wall and process-CPU milliseconds (the CPU column is the better guide on a shared machine):
- decode: a new image through ``reconstruct_file`` (load, crop, encode, 8 steps, batched previews,
  per-step PSNR/SSIM); baseline in the same process = ``SFTok.reconstruct`` alone (encode + the
  official decode, no per-step records or previews).
- frames: what a decode adds so that scrubbing needs no server call (every step's grid, both heat
  maps and the preview as PNG data URIs, and the scrubber's HTML); moving the slider then runs in the
  browser (measured by tests/browser/test_browser_app.py, test-output/scrub-latency.txt).

Usage: python bench/app.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall ms and median CPU ms of ``repeats`` calls (fn gets the repeat index)."""
    walls, cpus = [], []
    for i in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        walls.append(1000 * (time.perf_counter() - w))
        cpus.append(1000 * (time.process_time() - c))
    return float(np.median(walls)), float(np.median(cpus))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from core import SFTok, create_config, save_pretrained
    from workbench.services.decoding import DecodeSettings
    from workbench.io.images import image_to_tensor, prepare_image
    from workbench.ui.context import AppContext

    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    torch.manual_seed(0)
    model_dir = save_pretrained(SFTok(create_config("tiny")).eval(), tmp / "sftok")
    rng = np.random.default_rng(0)
    images = []
    for i in range(args.repeats + 1):
        path = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(path)
        images.append(path)
    ctx = AppContext.create(tmp / "ws", model_dir=model_dir, teacher_dir=None, with_jobs=False)
    model = ctx.registry.get("default").model  # loads and warms up
    from workbench.services.reconstruction import reconstruct_file

    settings = DecodeSettings(8, 1.0, 0)
    reconstruct_file(ctx.service, "default", images[-1], settings)
    decode = timed(lambda i: reconstruct_file(ctx.service, "default", images[i], settings), args.repeats)
    tensors = [image_to_tensor(prepare_image(p, 64).image) for p in images]
    base = timed(lambda i: model.reconstruct(tensors[i], 8, 1.0, torch.Generator().manual_seed(0)), args.repeats)

    from workbench.services.step_frames import make_frames
    from workbench.ui.components.step_scrubber import scrubber_html

    rec = reconstruct_file(ctx.service, "default", images[0], settings)
    trace = ctx.service.get(rec.trace_key)

    def frames(i: int) -> None:
        scrubber_html("bench", make_frames(trace), "confidence", "grid")

    frames(0)
    switch = timed(frames, max(args.repeats, 16))
    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    print(f"{'measurement':58s} {'wall ms':>9s} {'cpu ms':>9s}")
    for name, (wall, cpu) in [
        ("decode: new image -> all 8 steps with previews + metrics", decode),
        ("  baseline: SFTok.reconstruct only", base),
        ("frames: all steps as data URIs + scrubber HTML, per decode", switch),
    ]:
        print(f"{name:58s} {wall:9.1f} {cpu:9.1f}")
    print(f"ratio: decode / reconstruct = {decode[0] / base[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
