"""Training speed: every stage on the tiny preset, and the stage-2 SFVR step at the B shape, ours vs official.

Prints two tables.

1. Tiny preset, CPU, batch 8: steps/s and images/s of the real training loop (``trainers.loop.train``,
   data loading, EMA and logging included) per stage, on small real shards in a temp dir, random-init
   teacher / tokenizers. Each step is timed between two log calls (``log_every=1``) after warm-up steps;
   wall and CPU seconds are both shown because the machine may be shared.
2. One stage-2 step at the SFTok-B shape (``create_config("B")`` without pixel head, default
   MaskGIT-VQGAN teacher, random weights, batch 2, 256 px), forward + backward + clip + AdamW step:
   (a) official: the teacher encodes the batch inside the step, the images are encoded twice
       (no-grad for the self-forcing first pass, then with gradients): ``reuse_encoding=False``;
   (b) ours: proxy codes read from a proxy cache written by ``trainers.data.proxy_cache`` and
       ``reuse_encoding=True``.
   Both run on the same model with the same masks and replacement draws; their losses are checked
   to be identical before timing. Steps alternate a, b, a, b so load changes hit both alike.

3. ``--ddp``: the tiny stage-2 step on 1 and 2 processes under torchrun (``bench/train_ddp.py``).

Usage: python bench/train.py [--threads 1] [--only stages,b] [--stage-steps 8] [--b-steps 3] [--devices cpu,cuda]
       python bench/train.py --ddp [--batch 8] [--ddp-steps 12]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import MaskGITVQGAN, SFTok, create_config, save_pretrained  # noqa: E402
from trainers.config import LossConfig, SFVRConfig, load_config  # noqa: E402
from trainers.data.loaders import make_train_loader  # noqa: E402
from trainers.data.proxy_cache import cache_proxy_codes  # noqa: E402
from trainers.loop import train  # noqa: E402
from trainers.masking import random_masks  # noqa: E402
from trainers.objectives import ProxyCodeObjective  # noqa: E402
from trainers.stages import param_groups  # noqa: E402
from tests.trainers.shard_fixtures import write_shards  # noqa: E402


class StepClock:
    """A metric sink that only notes when each step was logged (wall and process CPU time)."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, float]] = []
        self.warnings: list[str] = []

    def rewind(self, step: int) -> None:
        self.marks = [m for m in self.marks if m[0] < step]

    def log(self, step: int, metrics: dict) -> None:
        if "train/loss" in metrics:
            self.marks.append((step, time.perf_counter(), time.process_time()))

    def event(self, message: str, level: str = "info") -> None:
        if level == "warning" and "stopped" not in message:
            self.warnings.append(message.split(":")[0])  # e.g. "LPIPS term disabled"

    def artifact(self, step: int, kind: str, path: str) -> None:
        pass

    def close(self) -> None:
        pass

    def per_step(self, skip: int) -> tuple[float, float]:
        """Median wall and CPU seconds per step, ignoring the first ``skip`` steps."""
        marks = [m for m in self.marks if m[0] > skip]
        walls = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
        cpus = [b[2] - a[2] for a, b in zip(marks, marks[1:])]
        return statistics.median(walls), statistics.median(cpus)


# -- 1. every stage, tiny preset --------------------------------------------------------------------
def stage_table(root: Path, steps: int, warmup: int, batch: int, dino_steps: int) -> list[tuple[str, float, float]]:
    train_shards = write_shards(root / "shards", "train", 64, seed=0)
    eval_shards = write_shards(root / "shards", "val", 8, seed=1)
    common = [f"data.train_shards={train_shards}", f"data.eval_shards={eval_shards}", f"data.batch_size={batch}",
              f"data.eval_batch_size={batch}", "log_every=1", "eval_every=100000", "save_every=100000",
              "eval_num_steps=[1]", "device=cpu"]
    model_cfg = load_config("1", None, [*common, "teacher_path=unused"]).model_config()
    torch.manual_seed(0)
    teacher = MaskGITVQGAN(model_cfg.teacher)
    save_pretrained(teacher, root / "teacher")
    save_pretrained(SFTok(model_cfg), root / "stage2")
    save_pretrained(SFTok(model_cfg.replace(has_pixel_head=True)), root / "stage3")
    cache_proxy_codes(teacher.eval(), train_shards, root / "cached", image_size=model_cfg.image_size)
    cached_pattern = str(root / "cached" / Path(train_shards).name)
    dino = root / "dino_random.pth"
    from trainers.dino_discriminator import DinoViTSmall

    torch.save(DinoViTSmall().state_dict(), dino)
    teacher_path, stage2, stage3 = f"teacher_path={root / 'teacher'}", f"init_weights={root / 'stage2'}", root / "stage3"
    plan = [
        ("teacher", "teacher", []),
        ("1", "1", [teacher_path]),
        ("2", "2 (teacher on the fly)", [teacher_path]),
        ("2", "2 (proxy cache)", [teacher_path, f"data.train_shards={cached_pattern}", f"data.eval_shards={cached_pattern}",
                                  "data.use_proxy_cache=true",
                                  "data.random_crop=false"]),
        ("3", "3 (PatchGAN from step 0)", [teacher_path, stage2, "stage3.disc_start=0"]),
        ("3", "3 (DINO disc, random weights)", [teacher_path, stage2, "stage3.disc_start=0", "stage3.discriminator=dino",
                                                f"stage3.dino_weights={dino}"]),
        ("generator", "generator", [f"tokenizer_path={stage3}"]),
    ]
    rows = []
    for stage, label, extra in plan:
        n = dino_steps if "DINO" in label else steps
        if n <= 0:
            continue
        cfg = load_config(stage, None, [*common, *extra, f"max_steps={warmup + n + 1}"])
        clock = StepClock()
        result = train(cfg, root / "runs" / label.replace(" ", "_"), sink=clock, progress=False)
        wall, cpu = clock.per_step(skip=warmup)
        assert result.final_step == warmup + n + 1
        rows.append((label, wall, cpu))
        notes = "; ".join(clock.warnings)
        print(f"  {label:<32} {1 / wall:8.2f} steps/s {batch / wall:8.1f} img/s  (cpu {cpu:.3f} s/step) {notes}", flush=True)
    return rows


# -- 2. stage-2 step at the B shape ----------------------------------------------------------------
def _write_photo_shard(path: Path, count: int, size: int) -> str:
    """``count`` real photos (centre square, resized to ``size``) in one shard."""
    import io

    import webdataset as wds
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as writer:
        for i in range(count):
            src = sources[i % len(sources)]
            side = min(src.shape[:2])
            top, left = (src.shape[0] - side) // 2, (src.shape[1] - side) // 2
            image = Image.fromarray(src[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            writer.write({"__key__": f"{i:08d}", "png": buf.getvalue(), "cls": str(i).encode()})
    return str(path)


def _cached_batch(root: Path, teacher: MaskGITVQGAN, batch: int) -> dict:
    """A batch read back through the proxy cache: images plus the teacher codes stored next to them."""
    shard = _write_photo_shard(root / "b-shards" / "b-000000.tar", batch, 256)
    cache_proxy_codes(teacher, shard, root / "b-cached", image_size=256, batch_size=batch)
    loader = make_train_loader(str(root / "b-cached" / "b-000000.tar"), 256, batch, seed=0, random_crop=False,
                               flip=True, with_proxy_codes=True)
    return next(iter(loader))


def b_stage2(root: Path, device: torch.device, steps: int, batch: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    tok = SFTok(create_config("B", has_pixel_head=False)).to(device).train()
    teacher = MaskGITVQGAN().to(device).eval()
    assert teacher.config == tok.config.teacher
    data = _cached_batch(root, teacher, batch)
    images, cached_codes = data["image"].to(device), data["proxy_codes"].to(device)
    assert torch.equal(cached_codes, teacher.encode(images)), "the proxy cache disagrees with the teacher"
    gen = torch.Generator().manual_seed(0)
    masks = random_masks(batch, tok.config.num_proxy_codes, gen, device=device)
    sfvr = SFVRConfig(replace_prob=1.0)  # run_stage2.sh
    use_own = (torch.rand(masks.shape, generator=gen) < sfvr.replace_prob).to(device)
    official = ProxyCodeObjective(tok, LossConfig(), sfvr, reuse_encoding=False)
    ours = ProxyCodeObjective(tok, LossConfig(), sfvr, reuse_encoding=True)

    with torch.no_grad():  # same weights, same draws: the two must agree to the bit
        a = official(images, teacher.encode(images), masks, use_own)
        b = ours(images, cached_codes, masks, use_own)
    same_inputs = torch.equal(a["inputs"], b["inputs"])
    loss_a, loss_b = float(a["loss"]), float(b["loss"])
    print(f"  [{device}] loss official {loss_a:.7f}  ours {loss_b:.7f}  identical={loss_a == loss_b and same_inputs}",
          flush=True)
    if device.type == "cpu":
        assert same_inputs and loss_a == loss_b, "reuse_encoding changed the loss"
    del a, b

    optimizer = torch.optim.AdamW(param_groups(tok, 1e-4), lr=1e-4, betas=(0.9, 0.99))

    def step(variant: str) -> tuple[float, float]:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        if variant == "official":
            out = official(images, teacher.encode(images), masks, use_own)
        else:
            out = ours(images, cached_codes, masks, use_own)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    step("official"), step("ours")  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"official": [], "ours": []}
    for _ in range(steps):
        for variant in ("official", "ours"):
            times[variant].append(step(variant))
            print(f"    {variant:<9} {times[variant][-1][0]:7.2f} s wall {times[variant][-1][1]:7.2f} s cpu", flush=True)
    result = {}
    for variant, samples in times.items():
        result[f"{variant}_wall"] = statistics.median(s[0] for s in samples)
        result[f"{variant}_cpu"] = statistics.median(s[1] for s in samples)
    result["batch"] = batch
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: a shared machine)")
    parser.add_argument("--only", default="stages,b")
    parser.add_argument("--stage-steps", type=int, default=8, help="timed steps per tiny stage")
    parser.add_argument("--dino-steps", type=int, default=2, help="timed steps for stage 3 with the DINO discriminator")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--b-steps", type=int, default=3, help="timed B-shape steps per variant (after 1 warm-up)")
    parser.add_argument("--devices", default="cpu,cuda", help="devices for the B-shape step (cuda only when present)")
    parser.add_argument("--ddp", action="store_true", help="only the data-parallel table (1 vs 2 processes)")
    parser.add_argument("--ddp-steps", type=int, default=12, help="timed steps per process count with --ddp")
    args = parser.parse_args()
    if args.ddp:
        from bench.train_ddp import run as ddp_table

        ddp_table(args.batch, args.ddp_steps, args.warmup + 1)
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        rows = []
        if "stages" in only:
            print(f"tiny preset, CPU, batch {args.batch}: real training loop per stage", flush=True)
            rows = stage_table(root, args.stage_steps, args.warmup, args.batch, args.dino_steps)
        b_results = {}
        if "b" in only:
            for name in args.devices.split(","):
                if name == "cuda" and not torch.cuda.is_available():
                    print("  (no CUDA device: B-shape step on CPU only)")
                    continue
                print(f"stage-2 step at the B shape on {name}", flush=True)
                b_results[name] = b_stage2(root, torch.device(name), args.b_steps)
    print()
    if rows:
        print(f"{'tiny stage (CPU, batch ' + str(args.batch) + ')':<34} {'steps/s':>8} {'images/s':>9} {'cpu s/step':>11}")
        for label, wall, cpu in rows:
            print(f"{label:<34} {1 / wall:8.2f} {args.batch / wall:9.1f} {cpu:11.3f}")
    for name, r in b_results.items():
        print()
        print(f"{'B stage-2 step, ' + name + ', batch ' + str(r['batch']):<52} {'s/step':>8} {'images/s':>9} {'cpu s':>8}")
        print(f"{'(a) official: teacher in step, encode twice':<52} {r['official_wall']:8.2f} "
              f"{r['batch'] / r['official_wall']:9.3f} {r['official_cpu']:8.2f}")
        print(f"{'(b) ours: proxy cache, reuse_encoding':<52} {r['ours_wall']:8.2f} "
              f"{r['batch'] / r['ours_wall']:9.3f} {r['ours_cpu']:8.2f}")
        print(f"speed-up (a)/(b): wall {r['official_wall'] / r['ours_wall']:.2f}x, cpu {r['official_cpu'] / r['ours_cpu']:.2f}x "
              f"(goal >= 1.3x)")
    print(f"(load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
