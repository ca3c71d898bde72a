"""The one training loop: forward -> loss -> backward -> clip -> step -> EMA -> log -> eval -> checkpoint.

Runs through HF Accelerate, so the same code serves 1 CPU, 1 GPU or N processes on M machines
(``torchrun`` or ``accelerate launch``). With N processes: ``data.batch_size`` is per process; each
rank reads its own shards; everything that trains (objective, discriminator, both optimisers) goes
through ``accelerator.prepare``, so gradients are averaged; only the main process writes the run
directory (metrics, events, images, checkpoints, the exported model) and evaluates; logged training
metrics are averaged over ranks. Random draws are functions of (seed, step, sample index) (see
``draws.py``), so N ranks at batch b train exactly like one process at batch N*b on the same samples.
Resume is exact: optimiser, EMA and the data position (consumed batches are skipped per rank) are
restored, so a resumed run replays the uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from core.pretrained import save_pretrained

from .config import TrainConfig
from .data.loaders import make_eval_loader, make_train_loader, shard_split_note
from .distributed import any_rank, explain_collective_failures, make_accelerator, mean_over_ranks, world_summary
from .draws import Draws, rank_seed
from .ema import EMA
from .losses import hinge_d_loss
from .provenance import code_version
from .schedules import lr_at
from .sink import JsonlSink, MetricSink, NullSink
from .stages import Stage, build_stage, param_groups
from .training_state import load_latest_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    interrupted: bool
    losses: list[tuple[int, float]]
    model_dir: Path | None
    last_metrics: dict[str, float]


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
    """This rank's training batches, after the ``skip`` it consumed before a resume."""
    loader = make_train_loader(cfg.data.train_shards, cfg.model_config().image_size, cfg.data.batch_size, seed=cfg.seed,
                               num_workers=cfg.data.num_workers, random_crop=cfg.data.random_crop, flip=cfg.data.flip,
                               with_proxy_codes=cfg.data.use_proxy_cache, shuffle=cfg.data.shuffle)
    iterator = iter(loader)
    if skip:
        iterator = itertools.islice(iterator, skip, None)
    return iterator


def _eval_batch(cfg: TrainConfig) -> dict[str, Any]:
    shards = cfg.data.eval_shards or cfg.data.train_shards
    loader = make_eval_loader(shards, cfg.model_config().image_size, cfg.data.eval_batch_size,
                              with_proxy_codes=cfg.data.use_proxy_cache)
    return next(iter(loader))


@dataclass
class _Trainables:
    """What a step updates, as prepared for the run's processes (DDP-wrapped when there are several)."""

    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    discriminator: torch.nn.Module | None  # the wrapped one: its update's gradients are averaged over ranks
    disc_optimizer: torch.optim.Optimizer | None
    ema: EMA | None


def _make_trainables(cfg: TrainConfig, stage: Stage) -> _Trainables:
    model = stage.saved_model
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas)
    ema = EMA(model) if cfg.ema else None
    disc_opt = None
    if stage.discriminator is not None:
        disc_opt = torch.optim.AdamW(stage.discriminator.parameters(), lr=cfg.stage3.disc_lr, betas=cfg.optim.betas,
                                     weight_decay=cfg.optim.weight_decay)
    return _Trainables(stage.objective, optimizer, stage.discriminator, disc_opt, ema)


def _prepared(accelerator: Any, parts: _Trainables) -> _Trainables:
    """Everything that trains through ``accelerator.prepare``: device, DDP gradient averaging, fp16 loss scaling."""
    if parts.discriminator is None:
        objective, optimizer = accelerator.prepare(parts.objective, parts.optimizer)
        return _Trainables(objective, optimizer, None, None, parts.ema)
    objective, optimizer, disc, disc_opt = accelerator.prepare(parts.objective, parts.optimizer, parts.discriminator,
                                                               parts.disc_optimizer)
    return _Trainables(objective, optimizer, disc, disc_opt, parts.ema)


def _restore(run_dir: Path, stage: Stage, parts: _Trainables, sink: MetricSink) -> int:
    """Load the newest checkpoint (every rank reads the same one) and return its step; 0 when there is none."""
    found = load_latest_checkpoint(run_dir)
    if found is None:
        return 0
    ckpt_path, ckpt, problems = found
    for problem in problems:
        sink.event(f"skipped a damaged checkpoint: {problem}", "warning")
    stage.saved_model.load_state_dict(ckpt["model"])
    state = ckpt["training"]
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.ema is not None and "ema" in ckpt:
        parts.ema.load(ckpt["ema"], state["ema_updates"])
    if stage.discriminator is not None and "discriminator" in state:
        stage.discriminator.load_state_dict(state["discriminator"])
        parts.disc_optimizer.load_state_dict(state["disc_optimizer"])
    start = int(ckpt["metadata"]["global_step"])
    sink.event(f"resumed from {ckpt_path.name} at step {start}")
    sink.rewind(start + 1)
    return start


def _discriminator_step(cfg: TrainConfig, accelerator: Any, parts: _Trainables, real: torch.Tensor,
                        fake: torch.Tensor) -> float:
    """One update of the (wrapped) discriminator on real vs detached fake images; its gradients are averaged over ranks."""
    disc = parts.discriminator
    parts.disc_optimizer.zero_grad(set_to_none=True)
    d_loss_fn = getattr(accelerator.unwrap_model(disc), "loss", hinge_d_loss)  # DINO adds LeCam to the hinge loss
    d_loss = d_loss_fn(disc(real), disc(fake.detach()))
    accelerator.backward(d_loss)
    accelerator.clip_grad_norm_(disc.parameters(), cfg.optim.max_grad_norm)
    parts.disc_optimizer.step()
    return float(d_loss.detach())


def train(cfg: TrainConfig, run_dir: str | Path, sink: MetricSink | None = None, resume: bool = True,
          progress: bool = True, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run one stage to ``cfg.max_steps`` (or until ``should_stop`` on any rank); the same call on every rank."""
    accelerator = make_accelerator(cfg, cpu=_device(cfg) == "cpu")
    with explain_collective_failures(accelerator, cfg.dist_timeout_s):
        return _train(cfg, accelerator, Path(run_dir), sink, resume, progress, should_stop)


def _train(cfg: TrainConfig, accelerator: Any, run_dir: Path, sink: MetricSink | None, resume: bool,
           progress: bool, should_stop: Callable[[], bool] | None) -> TrainResult:
    from accelerate.utils import set_seed

    main, rank = accelerator.is_main_process, accelerator.process_index
    device = accelerator.device
    world = world_summary(accelerator, cfg.data.batch_size)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        sink = sink or JsonlSink(run_dir)
        (run_dir / "config.json").write_text(json.dumps({**cfg.to_dict(), "distributed": world}, indent=2))
    else:
        sink = NullSink()  # one writer per run directory
    set_seed(cfg.seed)  # identical initial weights on every rank

    stage = build_stage(cfg, device)
    for note in stage.notes:
        sink.event(note, "warning")
        accelerator.print(f"[note] {note}")
    model = stage.saved_model
    parts = _make_trainables(cfg, stage)
    start = _restore(run_dir, stage, parts, sink) if resume else 0  # every rank loads the same checkpoint
    parts = _prepared(accelerator, parts)
    split_note = shard_split_note(cfg.data.train_shards, world["world_size"] * max(1, cfg.data.num_workers))
    started = (f"started stage {cfg.stage} on {world['world_size']} process(es): batch {cfg.data.batch_size} per "
               f"process, global batch {world['global_batch_size']} (x{world['world_size']} ranks, "
               f"x{world['grad_accumulation']} accumulation)")
    sink.event(started)
    accelerator.print(started)
    if split_note:
        sink.event(split_note, "warning")
        accelerator.print(f"[note] {split_note}")
    batches = _batches(cfg, skip=start)
    eval_batch = _eval_batch(cfg) if main else None
    commit = code_version() or ""

    def checkpoint(step: int) -> Path | None:
        """Main process writes; the others go on (they never read checkpoints mid-run)."""
        if not main:
            return None
        ema = parts.ema
        state: dict[str, Any] = {"optimizer": parts.optimizer.state_dict(), "ema_updates": ema.num_updates if ema else 0,
                                 "world": world}
        if stage.discriminator is not None:
            state["discriminator"] = stage.discriminator.state_dict()
            state["disc_optimizer"] = parts.disc_optimizer.state_dict()
        path = save_checkpoint(run_dir, step, model.state_dict(), ema.shadow if ema else None, state,
                               {"stage": cfg.stage, "git_commit": commit}, keep_last=cfg.keep_last)
        sink.artifact(step, "checkpoint", str(path))
        return path

    def evaluate(step: int) -> dict[str, float]:
        """Main process only, on the unwrapped model (no collective inside)."""
        if not main:
            return {}
        ema = parts.ema
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
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"stage {cfg.stage}", dynamic_ncols=True)
    model.train()
    raw_disc = stage.discriminator  # unwrapped: the generator-side GAN term must not enter DDP's gradient sync
    tick, images_seen = time.perf_counter(), 0
    step = start
    while step < cfg.max_steps:
        if any_rank(accelerator, should_stop is not None and should_stop()):
            interrupted = True
            break
        lr = lr_at(step, cfg.optim.lr, cfg.optim.warmup_steps, cfg.schedule_length, cfg.optim.end_lr)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        size = len(batch["image"])
        torch.manual_seed(rank_seed(cfg.seed, step, rank))  # in-model dropout: reproducible, its own on every rank
        kwargs = stage.prepare(batch, Draws.make(cfg.seed, step, step * world["global_batch_size"] + rank * size, size,
                                                 rank))
        with accelerator.autocast():
            out = parts.objective(**kwargs)
        loss = out["loss"]
        extra: dict[str, float] = {}
        adversarial = raw_disc is not None and step >= cfg.stage3.disc_start
        if adversarial:
            raw_disc.requires_grad_(False)  # generator-side term must not touch D's grads
            g_adv = -raw_disc(out["recon"]).mean()
            raw_disc.requires_grad_(True)
            loss = loss + cfg.stage3.gan_weight * g_adv
            extra["train/gan_loss"] = float(g_adv.detach())
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_([p for _, p in stage.trainable_named_parameters()], cfg.optim.max_grad_norm)
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
        if adversarial:
            extra["train/discriminator_loss"] = _discriminator_step(cfg, accelerator, parts, kwargs["images"], out["recon"])
        if parts.ema is not None:
            parts.ema.update(model)
        if stage.after_step is not None:
            extra.update(stage.after_step(step, out, accelerator))
        step += 1
        images_seen += size
        loss_value = float(loss.detach())
        losses.append((step, loss_value))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            elapsed = max(time.perf_counter() - tick, 1e-9)
            local = {"train/loss": loss_value, **extra}
            local.update({f"train/{k}": float(v) for k, v in out.items()
                          if k not in ("loss",) and isinstance(v, torch.Tensor) and v.dim() == 0})
            metrics = {**mean_over_ranks(accelerator, local), "train/step": step, "lr": lr, "grad_norm": float(grad_norm),
                       "throughput/images_per_s": images_seen * world["world_size"] / elapsed}
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
        model_dir = run_dir / "model"
        if main:
            if parts.ema is not None:
                parts.ema.copy_to(model)
            save_pretrained(model, model_dir, stage=cfg.stage, steps=step, git_commit=commit)
            if stage.export_extras is not None:
                stage.export_extras(model_dir)
            sink.artifact(step, "model", str(model_dir))
            sink.event(f"finished at step {step}; EMA weights in {model_dir}")
    else:
        sink.event(f"stopped at step {step}; checkpoint saved", "warning")
    sink.close()
    accelerator.wait_for_everyone()  # every rank returns once the checkpoint and the model exist
    return TrainResult(run_dir, step, interrupted, losses, model_dir, last_metrics)
