"""Peak memory of an SFTok preset on the CPU: load its weights, then reconstruct one image in 8 steps.

What a researcher asks before downloading SFTok-L: does it fit my machine? Each case runs in a fresh
Python process (a peak cannot be reset inside one, and torch's allocator keeps freed memory), which
reads a state dict written by the parent (random weights in the preset's shapes, as a released file
would be read), loads it into the model, then encodes one random image and decodes it in 8 steps at
batch 1, fp32 or the opt-in bf16 mode. The child reports ``resource.getrusage`` peak RSS (ru_maxrss)
after ``import torch``, after the load and after the decode; the table prints them with the weight
file's size, the host's CPU and whether bf16 was native here (where it is not, torch emulates it:
the bf16 copies still cost their memory, and the decode runs much slower than fp32).

Usage: python bench/memory.py [--presets tiny B L] [--precisions fp32 bf16] [--steps 8]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app_startup import cpu_name  # noqa: E402  (bench/ is the script folder)

GIB = 1024 ** 3


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_child(preset: str, weights: str, precision: str, steps: int) -> dict:
    """One case, in this (fresh) process: load, then reconstruct one image. Prints a JSON line."""
    import torch

    from core import SFTok, create_config
    from core.checkpoint import load_weights, read_state_dict

    torch.set_grad_enabled(False)
    after_import = peak_rss_bytes()
    start = time.perf_counter()
    model = SFTok(create_config(preset)).eval()
    load_weights(model, read_state_dict(weights), source=weights)  # the read dict is dropped on return
    load_s = time.perf_counter() - start
    after_load = peak_rss_bytes()
    size = model.config.image_size
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    _, info = model.encode(images)
    ids = info["min_encoding_indices"]
    out = model.decode_tokens(ids, steps, 1.0, torch.Generator().manual_seed(0), precision=precision)
    decode_s = time.perf_counter() - start
    assert out.shape == (1, 3, size, size) and bool(torch.isfinite(out).all())
    return {"after_import": after_import, "after_load": after_load, "peak": peak_rss_bytes(), "load_s": load_s,
            "decode_s": decode_s, "params": sum(p.numel() for p in model.parameters())}


def write_weights(preset: str, directory: Path) -> Path:
    """Random weights in ``preset``'s shapes, saved as a safetensors file (built in a child: the parent stays small)."""
    path = directory / f"sftok-{preset}.safetensors"
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from core import SFTok, create_config; "
            "from safetensors.torch import save_file; torch.manual_seed(0); "
            "m = SFTok(create_config(sys.argv[2])); "
            "save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(ROOT), preset, str(path)], check=True)
    return path


def measure(preset: str, weights: Path, precision: str, steps: int) -> dict:
    found = subprocess.run([sys.executable, __file__, "--child", preset, str(weights), precision, str(steps)],
                           check=True, capture_output=True, text=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "B", "L"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        preset, weights, precision, steps = args.child
        print(json.dumps(run_child(preset, weights, precision, int(steps))))
        return

    import torch

    from core.precision import bf16_support

    support = bf16_support(torch.device("cpu"))
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"bf16 {'native' if support.native else 'NOT native, emulated'} ({support.reason})")
    print(f"batch 1, encode + {args.steps}-step decode_tokens of one random image; peak RSS = ru_maxrss of a fresh "
          "process per case\n")
    header = (f"{'preset':>6} {'precision':>9} {'params':>8} {'file GiB':>8} {'import GiB':>10} {'load GiB':>8} "
              f"{'peak GiB':>8} {'load s':>6} {'decode s':>8}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            weights = write_weights(preset, Path(tmp))
            for precision in args.precisions:
                r = measure(preset, weights, precision, args.steps)
                print(f"{preset:>6} {precision:>9} {r['params'] / 1e6:7.1f}M {weights.stat().st_size / GIB:8.2f} "
                      f"{r['after_import'] / GIB:10.2f} {r['after_load'] / GIB:8.2f} {r['peak'] / GIB:8.2f} "
                      f"{r['load_s']:6.1f} {r['decode_s']:8.1f}", flush=True)
            weights.unlink()


if __name__ == "__main__":
    main()
