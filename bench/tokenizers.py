"""Encode and decode time of every tokenizer family behind ``core.tokenizer``, fp32 and bf16, batch 1 and 8.

What a researcher asks before picking a tokenizer to compare against: what does one image cost to tokenize and to
render back, for how many bits? Rows, all in this one process, each next to its token budget (tokens x log2
codebook bits):

- ``tiny default``: the embedded SFTok (``assets/default/sftok``, 64 px), the baseline of every ratio;
- ``SFTok-B``: the official B shape at 256 px, random weights;
- ``TiTok-B-64`` / ``TiTok-L-32``: ``core.titok`` presets (the release shapes), random weights;
- ``MaskGIT-VQGAN``: the teacher in the official f16 shape at 256 px, random weights;
- ``ReVQ 512T``: ``core.revq`` in the 512T release shape, its DC-AE a diffusers ``AutoencoderDC`` in the f32c32 SANA
  layout (``core.revq_files.DCAE_SANA_LAYOUT``, where its source is named), random weights.

Random weights cost what the released ones cost (same shapes, same kernels); the images are random too. SFTok
decodes in ``--steps`` masked steps (default 8, the official schedule), the others in one; SFTok-B above batch 1
decodes in ``--big-batch-steps`` (default 2: its 8 steps at batch 8 took 145 s on 2 shared AMD EPYC cores), which
the ``decode`` column says.

bf16: SFTok decodes through its own opt-in mode (``precision="bf16"``: bf16 weight copies for the decoder passes
and pixel head, logit head fp32) and encodes in fp32 (``core`` has no bf16 encode). The one-step families have no
bf16 mode in ``core``; their bf16 rows run a bf16 copy of the module under ``torch.autocast``. The ``products``
column is a census of the matmul/conv/attention ops the warm-up dispatched, by dtype, proving what each row ran.
Whether bf16 is native comes from ``core.precision``; where it is not (AVX2-only CPUs), torch emulates it: the
numbers are a measurement, not a recommendation (the app and library run fp32 there).

Each (tokenizer, precision) is warmed up at batch 1, untimed (the first pass pays kernel set-up; SFTok's warm-up
decodes one step, which runs every kernel its later steps run), then each batch is timed: best of ``--repeats`` for
the tiny default, one run for the big models. To keep the whole run to minutes, the big models run bf16
only where it is native (``--big-bf16-batches 1`` asks for them anyway: emulated on an AVX2 AMD EPYC, one SFTok-B
batch-1 bf16 decode took 516 s against 10.9 s in fp32, TiTok-B-64's 478 s against 3.4 s). One
intra-op thread by default (``--threads``): on a shared 2-core machine two threads wait on each other at every op
(the tiny default's decode, batch 1, measured at load 9: 0.41-0.53 s with 1 thread, 1.7-4.3 s with 2).

Usage: python bench/tokenizers.py [--batches 1,8] [--precisions fp32,bf16] [--steps 8] [--repeats 3]
                                  [--big-bf16-batches 1] [--threads 1] [--only sftok_b titok_b64 ...]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere; also sidesteps a stale editable install

import torch  # noqa: E402

from app_startup import cpu_name  # noqa: E402
from core import MaskGITVQGAN, SFTok, create_config  # noqa: E402
from core.precision import bf16_support  # noqa: E402
from core.revq import ReVQ  # noqa: E402
from core.revq_files import DCAE_SANA_LAYOUT  # noqa: E402
from core.titok import TiTok  # noqa: E402
from core.tokenizer import SFTokTokenizer, Tokenizer, as_tokenizer, load_tokenizer  # noqa: E402
from decode import op_census  # noqa: E402

DEFAULT_MODEL = ROOT / "assets" / "default" / "sftok"
BASELINE = "tiny"


@dataclass(frozen=True)
class Family:
    key: str  # for --only
    label: str
    build: Callable[[], Tokenizer]
    big: bool  # one timed run instead of best of --repeats


def _random(build: Callable[[], torch.nn.Module]) -> Callable[[], Tokenizer]:
    def make() -> Tokenizer:
        torch.manual_seed(0)
        return as_tokenizer(build().eval())
    return make


def revq_512t() -> ReVQ:
    """ReVQ 512T with a random DC-AE in the SANA layout (sizes and kernels are what the released files run)."""
    from diffusers import AutoencoderDC

    model = ReVQ("512T_NC=16384")
    model.attach_autoencoder(AutoencoderDC(**DCAE_SANA_LAYOUT).requires_grad_(False))
    return model


FAMILIES = [
    Family("tiny", "tiny default (embedded SFTok, 64 px)", lambda: load_tokenizer(DEFAULT_MODEL), big=False),
    Family("sftok_b", "SFTok-B (random)", _random(lambda: SFTok(create_config("B"))), big=True),
    Family("titok_b64", "TiTok-B-64 (random)", _random(lambda: TiTok("titok_b64")), big=True),
    Family("titok_l32", "TiTok-L-32 (random)", _random(lambda: TiTok("titok_l32")), big=True),
    Family("teacher", "MaskGIT-VQGAN 256 px (random)", _random(MaskGITVQGAN), big=True),  # adapter default: 256 px
    Family("revq_512t", "ReVQ 512T + DC-AE (random)", _random(revq_512t), big=True),
]


def budget(tok: Tokenizer) -> tuple[str, int]:
    """('tokens x codebook', bits per image); ReVQ's codebooks are one per position."""
    info = tok.info
    per = " per position" if info.family == "revq" else ""
    return f"{info.num_tokens} x {info.codebook_size}{per}", round(info.num_tokens * math.log2(info.codebook_size))


# -- the two precisions behind one call shape ------------------------------------------------------
@dataclass
class Runner:
    """encode(images) -> ids and decode(ids) -> images for one tokenizer in one precision."""

    encode: Callable[[torch.Tensor], torch.Tensor]
    decode: Callable[[torch.Tensor], torch.Tensor]
    how: str


def runner(tok: Tokenizer, precision: str, steps: int) -> Runner:
    if isinstance(tok, SFTokTokenizer):
        model = tok.module

        def decode(ids: torch.Tensor) -> torch.Tensor:
            return model.decode_tokens(ids, steps, 1.0, torch.Generator().manual_seed(0), precision=precision)

        how = f"{steps} steps" + (", SFTok bf16 mode; encode fp32" if precision == "bf16" else "")
        return Runner(tok.encode, decode, how)
    if precision == "fp32":
        return Runner(tok.encode, tok.decode, "1 step")
    twin = copy.copy(tok)  # same adapter and info, a bf16 copy of the module
    twin.module = copy.deepcopy(tok.module).to(torch.bfloat16)

    def in_bf16(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(x.to(torch.bfloat16) if x.is_floating_point() else x)
        return run

    return Runner(in_bf16(twin.encode), in_bf16(twin.decode), "1 step, bf16 copy + autocast")


def best_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Fastest wall time of ``fn(x)`` over ``repeats`` runs, and its output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - start)
    return best, out


@torch.no_grad()
def measure(family: Family, tok: Tokenizer, precision: str, batches: list[int], steps: int,
            repeats: int, warm_up: bool = True) -> list[dict]:
    """Rows of encode and decode seconds, one per batch; ``warm_up``: one untimed pass first (counted by dtype)."""
    run = runner(tok, precision, steps)
    warm_run = runner(tok, precision, 1)  # one SFTok pass warms every kernel its later passes use
    size = tok.info.image_size
    gen = torch.Generator().manual_seed(0)
    warm = torch.rand(1, 3, size, size, generator=gen)
    census = op_census(lambda: warm_run.decode(warm_run.encode(warm))) if warm_up else "as above"
    tokens, bits = budget(tok)
    rows = []
    for batch in batches:
        images = torch.rand(batch, 3, size, size, generator=gen)
        n = 1 if family.big else repeats
        t_enc, ids = best_time(run.encode, images, n)
        t_dec, _ = best_time(run.decode, ids, n)
        rows.append({"key": family.key, "label": family.label, "tokens": tokens, "bits": bits, "batch": batch,
                     "precision": precision, "encode": t_enc, "decode": t_dec, "how": run.how, "runs": n,
                     "products": census})
        print(f"  {family.label} {precision} batch {batch}: encode {t_enc:.3f} s, decode {t_dec:.3f} s",
              file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    base = {(r["batch"], r["precision"]): r["encode"] + r["decode"] for r in rows if r["key"] == BASELINE}
    print("| tokenizer | tokens x codebook | bits | batch | precision | encode s | decode s | total s | x tiny | "
          "decode | runs | products (warm-up census: encode + one decode pass) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["encode"] + r["decode"]
        ref = base.get((r["batch"], r["precision"]))
        ratio = f"{total / ref:.1f}x" if ref else "-"
        print(f"| {r['label']} | {r['tokens']} | {r['bits']} | {r['batch']} | {r['precision']} | {r['encode']:.3f} | "
              f"{r['decode']:.3f} | {total:.3f} | {ratio} | {r['how']} | {r['runs']} | {r['products']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=8, help="SFTok decoding steps (the others decode in one)")
    parser.add_argument("--big-batch-steps", type=int, default=2,
                        help="SFTok-B's steps above batch 1 (default 2: 8 steps at batch 8 take minutes on 2 cores)")
    parser.add_argument("--repeats", type=int, default=3, help="best of, for the tiny default (big models: 1 run)")
    parser.add_argument("--big-bf16-batches", default=None,
                        help="batches of the big models in bf16 (default: --batches where bf16 is native, else none)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: see the module docstring)")
    parser.add_argument("--only", nargs="+", choices=[f.key for f in FAMILIES], default=None,
                        help="these families only (the tiny default is always run: it is the baseline)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    precisions = args.precisions.split(",")
    support = bf16_support("cpu")
    start_load = os.getloadavg()[0]
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {start_load:.2f}; random images; SFTok {args.steps} steps, temperature 1")
    print(f"bf16 on cpu: {'native' if support.native else 'NOT native, emulated by torch'} ({support.reason})")
    started = time.perf_counter()
    rows: list[dict] = []
    skipped: list[str] = []  # big models whose bf16 rows were not asked for
    chosen = args.big_bf16_batches if args.big_bf16_batches is not None else ("" if not support.native else args.batches)
    big_bf16 = [int(b) for b in chosen.split(",") if b.strip()]
    for family in FAMILIES:
        if args.only and family.key not in args.only and family.key != BASELINE:
            continue
        tok = family.build()
        for precision in precisions:
            wanted = big_bf16 if family.big and precision == "bf16" else batches
            if not wanted:
                skipped.append(family.label)
            for batch in wanted:
                steps = args.big_batch_steps if family.key == "sftok_b" and batch > 1 else args.steps
                rows += measure(family, tok, precision, [batch], steps, args.repeats, warm_up=batch == wanted[0])
        del tok
    print()
    print_table(rows)
    if skipped:
        print(f"\nbf16 not run for {', '.join(skipped)}: emulated here (one SFTok-B batch-1 bf16 decode took 516 s "
              "against 10.9 s in fp32 on an AVX2 AMD EPYC); pass --big-bf16-batches 1 to measure them.")
    print(f"\nx tiny: total time over the tiny default's at the same batch and precision, this run. "
          f"Load average {start_load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
          f"{time.perf_counter() - started:.0f} s in all.")


if __name__ == "__main__":
    main()
