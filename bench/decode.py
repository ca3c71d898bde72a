"""Encode + multi-step decode speed: core.SFTok against the literal official-style modules.

Both models hold the same random weights and run in this process, interleaved, best of
``--repeats``. Rows: ``ours`` (default fp32 path), ``ours-blas`` (ours with the oneDNN linears of
core.kernels switched off, i.e. torch's BLAS as the official code uses), ``ours-bf16`` (the opt-in
bf16 mode, compared with our fp32 output) and ``official``. Printed per preset and batch size:
encode time, decode time split into decoder passes / sampling / pixel head, the official/ours
ratio, and the efficiency against a physical floor = (matmul + conv + attention FLOPs actually
executed, counted by torch's FlopCounterMode) / (the best fp32 product rate measured in this run,
torch's BLAS or oneDNN; for ours-bf16 the bf16 product rate). A second table breaks the decoder
passes down by step. Also checks that the implementations produce the same token and proxy ids
under the same seed, proves the bf16 row ran bf16 products (a census of the matmul/conv/attention
ops each decode dispatched, by dtype) and reports the bf16 mode's token agreement with fp32 on the
default model (assets/default/sftok on assets/samples), and which precision each row really ran, bf16
with whether it is native on the device (where it is not, torch emulates it: a measurement, not a
recommendation; the app and library fall back to fp32 there). ``--breakdown`` adds a per-op profile
(torch.profiler) of one decode of ours, ours-bf16 and official.

Usage: python bench/decode.py [--presets B tiny] [--batches-b 1,2] [--batches-tiny 1,8] [--repeats 3]
                              [--breakdown]
On CPU the B preset defaults to batch 1 and 2 (batch 8 takes minutes per decode on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere; also sidesteps a stale editable install

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core import SFTok, create_config  # noqa: E402
from core.kernels import linear, onednn_available, use_onednn  # noqa: E402
from core.precision import bf16_support  # noqa: E402
from reference.official_modules import OfficialSFTok, official_twin as _official_twin  # noqa: E402


# -- timing helpers --------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class CallTimer:
    """Wall time of every forward call of some modules (pre/post hooks), to split a decode."""

    device: torch.device
    spans: dict[str, list[float]] = field(default_factory=dict)

    def attach(self, module: torch.nn.Module, name: str) -> None:
        starts: list[float] = []

        def pre(*_):
            sync(self.device)
            starts.append(time.perf_counter())

        def post(*_):
            sync(self.device)
            self.spans.setdefault(name, []).append(time.perf_counter() - starts.pop())

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def reset(self) -> None:
        self.spans = {}


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32
                ) -> dict[str, float]:
    """Best GFLOP/s of an n x n x n product through torch's BLAS (``a @ b``) and, on CPU, through
    oneDNN (``core.kernels.linear``); the faster one is the machine's floor."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    ways = {"blas": lambda: a @ b}
    if device.type == "cpu" and onednn_available():
        ways["onednn"] = lambda: linear(a, b)
    rates = {}
    with torch.no_grad():
        for name, fn in ways.items():
            best = float("inf")
            for _ in range(repeats):
                sync(device)
                start = time.perf_counter()
                fn()
                sync(device)
                best = min(best, time.perf_counter() - start)
            rates[name] = 2 * n ** 3 / best / 1e9
    return rates


def executed_gflop(fn) -> float:
    """FLOPs the call executes (run oneDNN linears on the BLAS route: same products, same count)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


class OpCensus(TorchDispatchMode):
    """Counts the product ops (matmul/linear, conv, attention) a call dispatches, by input dtype."""

    KINDS = {"mm": "matmul", "addmm": "matmul", "bmm": "matmul", "baddbmm": "matmul", "linear": "matmul",
             "_linear_pointwise": "matmul", "convolution": "conv", "mkldnn_convolution": "conv",
             "_scaled_dot_product_flash_attention_for_cpu": "attention",
             "_scaled_dot_product_flash_attention": "attention", "_scaled_dot_product_efficient_attention": "attention",
             "_scaled_dot_product_cudnn_attention": "attention"}

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, str], int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = self.KINDS.get(func.overloadpacket.__name__)
        if kind is not None and args and isinstance(args[0], torch.Tensor):
            key = (kind, str(args[0].dtype).replace("torch.", ""))
            self.counts[key] = self.counts.get(key, 0) + 1
        return func(*args, **(kwargs or {}))

    def summary(self) -> str:
        return ", ".join(f"{n} {dtype} {kind}" for (kind, dtype), n in sorted(self.counts.items()))


def op_census(fn) -> str:
    with OpCensus() as census:
        fn()
    return census.summary()


# -- the two implementations behind one interface --------------------------------------------------
def official_twin(model: SFTok) -> OfficialSFTok:
    return _official_twin(model, share=True)  # shares our tensors


@dataclass
class Impl:
    name: str
    encode: callable
    decode: callable  # (ids, seed) -> (final proxy ids, images)
    timer: CallTimer
    count: callable = None  # what FlopCounterMode runs (oneDNN's fused linears are invisible to it)


def make_impls(model: SFTok, ref: OfficialSFTok, steps: int, device: torch.device) -> list[Impl]:
    """ours (the default fp32 path), ours-blas (ours with oneDNN linears off: torch's BLAS, as the
    official code uses), ours-bf16 (the opt-in bf16 mode) and the official-style modules."""

    def ours_impl(name: str, precision: str = "fp32", onednn: bool = True) -> Impl:
        timer = CallTimer(device)  # hooks of every impl fire on the shared modules; each resets its own
        decoder, pixel = model.inference_modules(precision)  # bf16: the bf16 copies, made here once
        timer.attach(decoder, "pass")
        timer.attach(pixel, "pixel")

        def decode(ids: torch.Tensor, seed: int, onednn: bool = onednn):
            gen = torch.Generator(device=device).manual_seed(seed)
            with torch.no_grad(), use_onednn(onednn):  # what decode_tokens runs, keeping the proxy ids
                proxy, logits = model.decode_ids(ids, steps, 1.0, gen, precision=precision)
                return proxy, model.render_soft(logits, precision)

        def encode(images):
            with torch.no_grad(), use_onednn(onednn):
                return model.encode(images)[1]["min_encoding_indices"]

        return Impl(name, encode, decode, timer, count=lambda ids, seed: decode(ids, seed, onednn=False))

    ref_timer = CallTimer(device)
    ref_timer.attach(ref.decoder, "pass")
    ref_timer.attach(ref.pixel_decoder, "pixel")

    def ref_decode(ids: torch.Tensor, seed: int):
        torch.manual_seed(seed)  # upstream draws from the global RNG
        with torch.no_grad():
            proxy, logits = ref.decoder.generate(ref.z_from_ids(ids), steps, 1.0)
            return proxy, ref.soft_decode(logits).clamp(0, 1)

    def ref_encode(images):
        return ref.encode(images)[1]["min_encoding_indices"]

    impls = [ours_impl("ours")]
    if device.type == "cpu" and onednn_available():
        impls.append(ours_impl("ours-blas", onednn=False))
    impls.append(ours_impl("ours-bf16", precision="bf16"))
    return impls + [Impl("official", ref_encode, ref_decode, ref_timer)]


def timed(fn, device: torch.device) -> tuple[float, float, object]:
    """(wall s, process CPU s, result). With one thread, CPU time barely moves when other
    processes share the cores, so it is the steadier number on a busy machine."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu, out


# -- one preset x batch --------------------------------------------------------------------------
def run_case(preset: str, batch: int, steps: int, repeats: int, device: torch.device, rate: float,
             rate_bf16: float, breakdown: bool = False) -> tuple[list[dict], list[dict]]:
    torch.manual_seed(0)
    cfg = create_config(preset)
    model = SFTok(cfg).to(device).eval()
    ref = official_twin(model)
    impls = make_impls(model, ref, steps, device)
    images = torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1)).to(device)
    best: dict[str, dict] = {impl.name: {"encode": float("inf"), "decode": float("inf"), "cpu": float("inf")}
                             for impl in impls}
    outputs: dict[str, tuple] = {}
    for _ in range(repeats):
        for impl in impls:  # interleaved, so background load hits both alike
            t_enc, _, ids = timed(lambda impl=impl: impl.encode(images), device)
            impl.timer.reset()
            t_dec, cpu_dec, out = timed(lambda impl=impl, ids=ids: impl.decode(ids, 1234), device)
            outputs[impl.name] = (ids, *out)
            rec = best[impl.name]
            rec["encode"] = min(rec["encode"], t_enc)
            rec["cpu"] = min(rec["cpu"], cpu_dec)
            if t_dec < rec["decode"]:
                spans = impl.timer.spans
                rec.update(decode=t_dec, passes=sum(spans["pass"]), per_pass=list(spans["pass"]), pixel=sum(spans["pixel"]))
    ids = outputs["ours"][0]
    rows = []
    for impl in impls:
        rec = best[impl.name]
        gflop = executed_gflop(lambda impl=impl: (impl.count or impl.decode)(ids, 1234))
        floor = gflop / (rate_bf16 if impl.name == "ours-bf16" else rate)
        other = "ours" if impl.name == "ours-bf16" else "official"  # bf16 is judged against our fp32
        census = op_census(lambda impl=impl: impl.decode(ids, 1234))
        print(f"  {preset} b{batch} {impl.name}: ops dispatched in one decode: {census}", flush=True)
        if breakdown:
            print_breakdown(f"{preset} b{batch} {impl.name}", lambda impl=impl: impl.decode(ids, 1234), rec["passes"])
        rows.append(dict(preset=preset, batch=batch, impl=impl.name, encode=rec["encode"], decode=rec["decode"],
                         passes=rec["passes"], sampling=rec["decode"] - rec["passes"] - rec["pixel"], pixel=rec["pixel"],
                         gflop=gflop, floor=floor, eff=floor / rec["decode"],
                         ratio=best["official"]["decode"] / rec["decode"], cpu=rec["cpu"],
                         vs_ours=best["ours"]["decode"] / rec["decode"], cpu_vs_ours=best["ours"]["cpu"] / rec["cpu"],
                         cpu_ratio=best["official"]["cpu"] / rec["cpu"],
                         enc_ratio=best["official"]["encode"] / rec["encode"],
                         same="" if impl.name == "official" else compare(outputs[impl.name], outputs[other], other)))
    masked = masked_counts(cfg.num_proxy_codes, steps)
    step_rows = [dict(preset=preset, batch=batch, step=s, masked=masked[s], ours=best["ours"]["per_pass"][s],
                      official=best["official"]["per_pass"][s]) for s in range(steps)]
    return rows, step_rows


def compare(out: tuple, base: tuple, base_name: str) -> str:
    """Agreement of (token ids, proxy ids, images) with another implementation's."""
    tokens = float((out[0] == base[0]).float().mean())
    proxy = float((out[1] == base[1]).float().mean())
    return (f"vs {base_name}: tokens {tokens:.1%} equal, proxy ids {proxy:.1%} equal, "
            f"max |dpx| {float((out[2] - base[2]).abs().max()):.1e}")


CATEGORIES = [  # (category, substrings of profiler op names), first match wins
    ("linear (matmul)", ("_linear_pointwise", "aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul")),
    ("conv (pixel head)", ("convolution",)),
    ("attention (SDPA)", ("scaled_dot_product",)),
    ("norms", ("layer_norm", "group_norm")),
    ("casts/copies", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::clone")),
    ("elementwise", ("aten::add", "aten::mul", "aten::silu", "aten::gelu", "aten::tanh", "aten::clamp", "aten::sub",
                     "aten::div", "aten::neg", "aten::log", "aten::exp", "aten::softmax", "aten::_softmax")),
    ("sampling/indexing", ("uniform", "argmax", "topk", "sort", "gather", "scatter", "index", "embedding", "where",
                           "masked", "cat", "fill_", "lt", "gt", "eq", "ne")),
]


def print_breakdown(label: str, fn, pass_seconds: float) -> None:
    """Self CPU time of one decode by op category and the top ops (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    by_cat: dict[str, float] = {}
    for e in events:
        cat = next((c for c, keys in CATEGORIES if any(k in e.key for k in keys)), "other (dispatch, views, python)")
        by_cat[cat] = by_cat.get(cat, 0.0) + e.self_cpu_time_total
    print(f"\n  breakdown {label}: {total / 1e6:.3f} s self CPU time (profiled run; decoder passes alone {pass_seconds:.3f} s wall)")
    for cat, t in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"    {cat:<34} {t / 1e6:8.3f} s {t / total:6.1%}")
    print("    top ops: " + "; ".join(f"{e.key} {e.self_cpu_time_total / 1e6:.3f} s x{e.count}"
                                      for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]))


def default_model_agreement(seeds: int = 4) -> str:
    """bf16 vs fp32 proxy-id agreement of the shipped default model on the shipped samples."""
    import numpy as np
    from PIL import Image

    from core import load_pretrained

    assets = ROOT / "assets"
    model = load_pretrained(assets / "default" / "sftok", strict=True)
    size = model.config.image_size
    paths = sorted((assets / "samples").glob("*.png"))
    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((size, size))))
                          .permute(2, 0, 1).float() / 255 for p in paths])
    with torch.no_grad():
        ids = model.encode(images)[1]["min_encoding_indices"]
    parts = []
    for temperature, n in ((0.0, 1), (1.0, seeds)):
        agree = []
        for seed in range(n):
            a, _ = model.decode_ids(ids, 8, temperature, torch.Generator().manual_seed(seed))
            b, _ = model.decode_ids(ids, 8, temperature, torch.Generator().manual_seed(seed), precision="bf16")
            agree.append(float((a == b).float().mean()))
        parts.append(f"T={temperature:g}: {sum(agree) / len(agree):.2%}" + (f" (min {min(agree):.2%} over {n} seeds)" if n > 1 else ""))
    return f"bf16 vs fp32 proxy ids, default model on {len(paths)} shipped samples: " + ", ".join(parts)


def masked_counts(slots: int, steps: int) -> list[int]:
    from core.schedules import num_masked_after_step

    counts, masked = [], slots
    for s in range(steps):
        counts.append(masked)
        if s < steps - 1:
            masked = num_masked_after_step(s, steps, slots, masked)
    return counts


# -- printing ----------------------------------------------------------------------------------------
def print_tables(rows: list[dict], step_rows: list[dict], rate: float, rate_bf16: float, device: torch.device) -> None:
    head = (f"{'preset':<6} {'batch':>5} {'impl':<10} {'encode s':>9} {'decode s':>9} {'passes s':>9} {'sample s':>9} "
            f"{'pixel s':>8} {'off/ours':>8} {'cpu s':>8} {'(cpu)':>7} {'GFLOP':>7} {'floor s':>8} {'eff':>5}  outputs")
    print(head)
    print("-" * len(head))
    for r in rows:
        ours = r["impl"] != "official"
        ratio = f"{r['ratio']:.3f}x" if ours else ""
        cpu_ratio = f"{r['cpu_ratio']:.3f}x" if ours else ""
        same = r["same"]
        print(f"{r['preset']:<6} {r['batch']:>5} {r['impl']:<10} {r['encode']:>9.3f} {r['decode']:>9.3f} {r['passes']:>9.3f} "
              f"{r['sampling']:>9.3f} {r['pixel']:>8.3f} {ratio:>8} {r['cpu']:>8.3f} {cpu_ratio:>7} {r['gflop']:>7.1f} "
              f"{r['floor']:>8.3f} {r['eff']:>5.0%}  {same}")
    support = bf16_support(device)
    native = f"native on {device}" if support.native else f"NOT native on {device}, emulated"
    print(f"\nprecision that ran: ours, ours-blas, official fp32; ours-bf16 bf16 ({native}: {support.reason})")
    for r in rows:
        if r["impl"] == "ours-bf16":
            print(f"{r['preset']} b{r['batch']} bf16 decode ({'native' if support.native else 'emulated'}): "
                  f"{r['vs_ours']:.2f}x our fp32, {r['ratio']:.2f}x official "
                  f"(CPU time: {r['cpu_vs_ours']:.2f}x, {r['cpu_ratio']:.2f}x)")
    print("\nencode ratio official/ours: " + ", ".join(
        f"{r['preset']} b{r['batch']}: {r['enc_ratio']:.3f}x" for r in rows if r["impl"] == "ours"))
    print(f"floor = executed matmul/conv/attention GFLOP / {rate:.1f} GFLOP/s (best fp32 2048^3 product, {device}); "
          f"eff = floor / decode time (ours-bf16: against the bf16 product rate, {rate_bf16:.1f} GFLOP/s).\n"
          "decode = 8 decoder passes + sampling + pixel head (soft render); "
          "cpu s = process CPU time of the decode, (cpu) = its official/ours ratio.")
    print("\nper-step decoder pass time (ms), batch 1 where run")
    print(f"{'preset':<6} {'step':>4} {'masked in':>9} {'ours':>9} {'official':>9} {'off/ours':>8}")
    for r in step_rows:
        print(f"{r['preset']:<6} {r['step']:>4} {r['masked']:>9} {1e3 * r['ours']:>9.1f} {1e3 * r['official']:>9.1f} "
              f"{r['official'] / r['ours']:>7.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["B", "tiny"])
    parser.add_argument("--batches-b", default=None, help="comma list; default 1,2 on CPU, 1,8 on GPU")
    parser.add_argument("--batches-tiny", default="1,8")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--breakdown", action="store_true", help="per-op profile (torch.profiler) of one decode per impl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches_b = args.batches_b or ("1,8" if device.type == "cuda" else "1,2")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}; {args.steps} steps, temperature 1, best of {args.repeats}")
    support = bf16_support(device)
    print(f"bf16 on {device}: {'native' if support.native else 'not native (emulated)'}: {support.reason}")
    rates = matmul_rate(device)
    rate = max(rates.values())
    rates_bf16 = matmul_rate(device, dtype=torch.bfloat16)
    rows, step_rows = [], []
    for preset in args.presets:
        batches = batches_b if preset in ("B", "L") else args.batches_tiny
        for batch in (int(b) for b in batches.split(",")):
            case_rows, case_steps = run_case(preset, batch, args.steps, args.repeats, device, rate,
                                             max(rates_bf16.values()), args.breakdown)
            rows += case_rows
            if batch == 1:
                step_rows += case_steps
            print(f"  done {preset} batch {batch}", file=sys.stderr, flush=True)
    rates_end = matmul_rate(device)
    rates_bf16_end = matmul_rate(device, dtype=torch.bfloat16)
    print()
    print_tables(rows, step_rows, max(rate, *rates_end.values()), max(*rates_bf16.values(), *rates_bf16_end.values()), device)
    print(default_model_agreement())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for name in rates:
        print(f"fp32 {name} product rate start/end: {rates[name]:.1f}/{rates_end[name]:.1f} GFLOP/s")
    for name in rates_bf16:
        print(f"bf16 {name} product rate start/end: {rates_bf16[name]:.1f}/{rates_bf16_end[name]:.1f} GFLOP/s")
    print(f"load average at end {load:.2f}")


if __name__ == "__main__":
    main()
