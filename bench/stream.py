"""Upload -> first step on screen, and -> all steps, for the Reconstruct screen's decode, before and after streaming.

What a screen waits for is measured without the browser: encode, decode passes, previews, per-step metrics and
the scrubber's PNG frames (``make_frames``, extended step by step as the screen does). Rows, in one process,
interleaved per repeat (best of ``--repeats``):

- ``before``: the previous path: all passes, then every preview in one batched pixel-decoder pass at the end,
  then the frames; the first step appears with the last.
- ``stream, full previews``: steps yielded as decoded (``iter_reconstruct_trace``), each preview a full render.
- ``stream, half-size previews`` (what the app does on models above 128 px): steps 1..T-1 rendered with the pixel
  decoder's last level skipped (128 px for B, upscaled bilinearly), the last step in full.

A second table gives one preview's cost at full and half size, and the fidelity of the half-size previews: PSNR
of each (upscaled) half-size preview against the full render of the same step's logits, over the T-1 steps.
SFTok-B carries random weights (the released files cannot be downloaded here), so that PSNR describes a
random decoder; the tiny default model cannot skip a level (its top levels differ in width) and is unchanged.

Usage: python bench/stream.py [--presets B tiny] [--steps 8] [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from analysis.image_metrics import psnr  # noqa: E402
from app_startup import cpu_name  # noqa: E402
from core import SFTok, create_config, load_pretrained  # noqa: E402
from workbench.io.images import image_to_tensor, prepare_image, tensor_to_uint8  # noqa: E402
from workbench.services import decoding  # noqa: E402
from workbench.services.decoding import DecodeSettings, iter_reconstruct_trace  # noqa: E402
from workbench.services.step_frames import make_frames  # noqa: E402
from workbench.services.step_previews import preview_skip_levels, render_step_preview  # noqa: E402
from workbench.services.traces import trace_from_decode_steps  # noqa: E402

SAMPLE = ROOT / "assets" / "samples" / "coffee.png"


def model_for(preset: str) -> SFTok:
    if preset == "tiny":
        return load_pretrained(ROOT / "assets" / "default" / "sftok").eval()
    torch.manual_seed(0)
    return SFTok(create_config(preset)).eval()


def time_before(model: SFTok, image: Image.Image, settings: DecodeSettings) -> tuple[float, float]:
    """The previous path (batched previews at the end): first step and last step appear together."""
    start = time.perf_counter()
    with torch.no_grad():
        picture = image_to_tensor(image)
        _, info = model.encode(picture)
        records = model.decode_steps(info["min_encoding_indices"].reshape(1, -1), settings.num_steps,
                                     settings.temperature, settings.generator(), previews=True)
        previews = torch.cat([r.preview for r in records])
        decoding.default_step_metrics(previews, picture)
        trace = trace_from_decode_steps(records, model.config.mask_id, tensor_to_uint8(previews),
                                        tensor_to_uint8(previews[-1:])[0], np.zeros(1, np.int64), "", {})
        make_frames(trace)
    total = time.perf_counter() - start
    return total, total


def time_stream(model: SFTok, image: Image.Image, settings: DecodeSettings, full_previews: bool
                ) -> tuple[float, float]:
    """(seconds to the first step's frames, seconds to the complete trace's frames) of the streaming path."""
    original = decoding.preview_skip_levels
    if full_previews:
        decoding.preview_skip_levels = lambda _model: 0
    try:
        start, first, frames = time.perf_counter(), None, None
        for trace in iter_reconstruct_trace(model, image, settings):
            frames = make_frames(trace, frames)
            first = first if first is not None else time.perf_counter() - start
        return first, time.perf_counter() - start
    finally:
        decoding.preview_skip_levels = original


def preview_fidelity(model: SFTok, image: Image.Image, settings: DecodeSettings) -> tuple[float, float, float, float]:
    """(full-render seconds, half-render seconds, mean PSNR dB, lowest PSNR dB) of half- against full-size previews."""
    with torch.no_grad():
        _, info = model.encode(image_to_tensor(image))
        records = model.decode_steps(info["min_encoding_indices"].reshape(1, -1), settings.num_steps,
                                     settings.temperature, settings.generator())
        full_s, half_s, values = [], [], []
        for record in records[:-1]:
            t0 = time.perf_counter()
            full = render_step_preview(model, record.logits, "fp32", 0)
            t1 = time.perf_counter()
            half = render_step_preview(model, record.logits, "fp32", 1)
            t2 = time.perf_counter()
            full_s.append(t1 - t0)
            half_s.append(t2 - t1)
            values.append(float(psnr(half, full)[0]))
    return min(full_s), min(half_s), float(np.mean(values)), float(np.min(values))


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["B", "tiny"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    settings = DecodeSettings(args.steps, 1.0, 0)
    table, fidelity = [], []
    for preset in args.presets:
        model = model_for(preset)
        image = prepare_image(SAMPLE, model.config.image_size).image
        rows: dict[str, Callable[[], tuple[float, float]]] = {
            "before (batched previews at the end)": partial(time_before, model, image, settings),
            "stream, full previews": partial(time_stream, model, image, settings, True),
        }
        if preview_skip_levels(model):
            rows["stream, half-size previews (app)"] = partial(time_stream, model, image, settings, False)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        time_stream(model, image, DecodeSettings(1, 1.0, 0), False)  # warm-up: first-call allocations
        for _ in range(args.repeats):
            for name, run in rows.items():
                runs[name].append(run())
        base = best(runs[next(iter(rows))])[1]
        for name in rows:
            first, last = best(runs[name])
            table.append((preset, name, first, last, base / last))
        if preview_skip_levels(model):
            fidelity.append((preset, *preview_fidelity(model, image, settings)))
        else:
            fidelity.append((preset, None, None, None, None))
    print(f"\nUpload -> steps on screen (server side), {args.steps} steps, fp32, best of {args.repeats}:")
    print("| preset | path | first step (s) | all steps (s) | all steps: before / this |\n|---|---|---:|---:|---:|")
    for preset, name, first, last, ratio in table:
        print(f"| {preset} | {name} | {first:.2f} | {last:.2f} | {ratio:.2f}x |")
    print("\nOne intermediate preview, full against half size (pixel decoder's last level skipped, upscaled):")
    print("| preset | full render (s) | half render (s) | full / half | PSNR half vs full, mean (dB) | lowest (dB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset, full, half, mean, low in fidelity:
        if full is None:
            print(f"| {preset} | - | - | - | not skipped (top levels differ in width; every step full) | - |")
        else:
            print(f"| {preset} | {full:.2f} | {half:.2f} | {full / half:.2f}x | {mean:.2f} | {low:.2f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
