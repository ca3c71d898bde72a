"""The one training loop: forward -> loss -> backward -> clip -> step -> EMA -> log -> eval -> checkpoint.

Runs through HF Accelerate, so the same code serves 1 CPU, 1 GPU or N GPUs (``accelerate launch``).
Resume is exact: optimiser, EMA, the trainer's random generator, torch's RNG and the data position
(consumed batches are skipped) are restored, so a resumed run replays the uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from core.pretrained import save_pretrained

from .training_state import load_latest_checkpoint, save_checkpoint
from .config import TrainConfig
from .data.loaders import make_eval_loader, make_train_loader
from .ema import EMA
from .losses import hinge_d_loss
from .schedules import lr_at
from .sink import JsonlSink, MetricSink
from .stages import build_stage, param_groups


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    interrupted: bool
    losses: list[tuple[int, float]]
    model_dir: Path | None
    last_metrics: dict[str, float]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _device(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _save_image_grid(images: torch.Tensor, path: Path) -> None:
    from PIL import Image

    grid = images.detach().float().clamp(0, 1).cpu()
    grid = torch.cat(list(grid), dim=1)  # stack the batch vertically: (3, B*H, W')
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _batches(cfg: TrainConfig, skip: int) -> Iterator[dict[str, Any]]:
    loader = make_train_loader(cfg.data.train_shards, cfg.model_config().image_size, cfg.data.batch_size, seed=cfg.seed,
                               num_workers=cfg.data.num_workers, random_crop=cfg.data.random_crop, flip=cfg.data.flip,
                               with_proxy_codes=cfg.data.use_proxy_cache)
    iterator = iter(loader)
    if skip:
        iterator = itertools.islice(iterator, skip, None)
    return iterator


def _eval_batch(cfg: TrainConfig) -> dict[str, Any]:
    shards = cfg.data.eval_shards or cfg.data.train_shards
    loader = make_eval_loader(shards, cfg.model_config().image_size, cfg.data.eval_batch_size,
                              with_proxy_codes=cfg.data.use_proxy_cache)
    return next(iter(loader))


def train(cfg: TrainConfig, run_dir: str | Path, sink: MetricSink | None = None, resume: bool = True,
          progress: bool = True, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device_name = _device(cfg)
    accelerator = Accelerator(cpu=device_name == "cpu", mixed_precision=cfg.mixed_precision if device_name != "cpu" else "no")
    device = accelerator.device
    set_seed(cfg.seed)
    sink = sink or JsonlSink(run_dir)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    stage = build_stage(cfg, device)
    for note in stage.notes:
        sink.event(note, "warning")
        accelerator.print(f"[note] {note}")
    model = stage.saved_model
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas)
    disc_opt = None
    if stage.discriminator is not None:
        disc_opt = torch.optim.AdamW(stage.discriminator.parameters(), lr=cfg.stage3.disc_lr, betas=cfg.optim.betas,
                                     weight_decay=cfg.optim.weight_decay)
    ema = EMA(model) if cfg.ema else None
    gen = torch.Generator().manual_seed(cfg.seed)

    start = 0
    found = load_latest_checkpoint(run_dir) if resume else None
    if found is not None:
        ckpt_path, ckpt, problems = found
        for problem in problems:
            sink.event(f"skipped a damaged checkpoint: {problem}", "warning")
        model.load_state_dict(ckpt["model"])
        state = ckpt["training"]
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and "ema" in ckpt:
            ema.shadow = {k: v.clone() for k, v in ckpt["ema"].items()}
            ema.num_updates = int(state["ema_updates"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if stage.discriminator is not None and "discriminator" in state:
            stage.discriminator.load_state_dict(state["discriminator"])
            disc_opt.load_state_dict(state["disc_optimizer"])
        start = int(ckpt["metadata"]["global_step"])
        sink.event(f"resumed from {ckpt_path.name} at step {start}")
        sink.rewind(start + 1)

    objective, optimizer = accelerator.prepare(stage.objective, optimizer)
    batches = _batches(cfg, skip=start)
    eval_batch = _eval_batch(cfg)
    commit = git_commit()

    def checkpoint(step: int) -> Path:
        state: dict[str, Any] = {"optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                                 "torch_rng": torch.get_rng_state(), "ema_updates": ema.num_updates if ema else 0}
        if stage.discriminator is not None:
            state["discriminator"] = stage.discriminator.state_dict()
            state["disc_optimizer"] = disc_opt.state_dict()
        path = save_checkpoint(run_dir, step, model.state_dict(),
                               ema.shadow if ema else None, state, {"stage": cfg.stage, "git_commit": commit},
                               keep_last=cfg.keep_last)
        sink.artifact(step, "checkpoint", str(path))
        return path

    def evaluate(step: int) -> dict[str, float]:
        if ema is not None:
            ema.store(model)
            ema.copy_to(model)
        model.eval()
        with torch.no_grad():
            metrics, images = stage.evaluate(model, {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                                     for k, v in eval_batch.items()}, step)
        model.train()
        if stage.name == "3":
            model.encoder.eval()
            model.quantize.eval()
        if ema is not None:
            ema.restore(model)
        if images is not None:
            path = run_dir / "images" / f"step-{step:07d}.png"
            _save_image_grid(images[:8], path)
            sink.artifact(step, "image", str(path))
        sink.log(step, metrics)
        return metrics

    losses: list[tuple[int, float]] = []
    last_metrics: dict[str, float] = {}
    interrupted = False
    bar = None
    if progress and accelerator.is_main_process:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"stage {cfg.stage}", dynamic_ncols=True)
    model.train()
    tick, images_seen = time.perf_counter(), 0
    step = start
    while step < cfg.max_steps:
        if should_stop is not None and should_stop():
            interrupted = True
            break
        lr = lr_at(step, cfg.optim.lr, cfg.optim.warmup_steps, cfg.schedule_length, cfg.optim.end_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        kwargs = stage.prepare(batch, gen)
        with accelerator.autocast():
            out = objective(**kwargs)
        loss = out["loss"]
        extra: dict[str, float] = {}
        adversarial = stage.discriminator is not None and step >= cfg.stage3.disc_start
        if adversarial:
            stage.discriminator.requires_grad_(False)  # generator-side term must not touch D's grads
            g_adv = -stage.discriminator(out["recon"]).mean()
            stage.discriminator.requires_grad_(True)
            loss = loss + cfg.stage3.gan_weight * g_adv
            extra["train/gan_loss"] = float(g_adv.detach())
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_([p for _, p in stage.trainable_named_parameters()], cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if adversarial:
            disc_opt.zero_grad(set_to_none=True)
            d_loss_fn = getattr(stage.discriminator, "loss", hinge_d_loss)  # DINO adds LeCam to the hinge loss
            d_loss = d_loss_fn(stage.discriminator(kwargs["images"]), stage.discriminator(out["recon"].detach()))
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(stage.discriminator.parameters(), cfg.optim.max_grad_norm)
            disc_opt.step()
            extra["train/discriminator_loss"] = float(d_loss.detach())
        if ema is not None:
            ema.update(model)
        if stage.after_step is not None:
            extra.update(stage.after_step(step, out))
        step += 1
        images_seen += kwargs["images"].shape[0] if "images" in kwargs else kwargs["tokens"].shape[0]
        loss_value = float(loss.detach())
        losses.append((step, loss_value))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            elapsed = max(time.perf_counter() - tick, 1e-9)
            metrics = {"train/loss": loss_value, "train/step": step, "lr": lr, "grad_norm": float(grad_norm),
                       "throughput/images_per_s": images_seen / elapsed, **extra}
            metrics.update({f"train/{k}": float(v) for k, v in out.items()
                            if k not in ("loss",) and isinstance(v, torch.Tensor) and v.dim() == 0})
            sink.log(step, metrics)
            tick, images_seen = time.perf_counter(), 0
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            last_metrics = evaluate(step)
        if step % cfg.save_every == 0 and step < cfg.max_steps:
            checkpoint(step)
    if bar is not None:
        bar.close()
    checkpoint(step)
    model_dir = None
    if not interrupted and step >= cfg.max_steps:
        if ema is not None:
            ema.copy_to(model)
        model_dir = save_pretrained(model, run_dir / "model", stage=cfg.stage, steps=step, git_commit=commit)
        if stage.export_extras is not None:
            stage.export_extras(model_dir)
        sink.artifact(step, "model", str(model_dir))
        sink.event(f"finished at step {step}; EMA weights in {model_dir}")
    else:
        sink.event(f"stopped at step {step}; checkpoint saved", "warning")
    sink.close()
    return TrainResult(run_dir, step, interrupted, losses, model_dir, last_metrics)
