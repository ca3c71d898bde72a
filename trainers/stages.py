"""What differs between stages, as data: the objective, the saved model, batch preparation, eval.

``build_stage(cfg, device)`` returns a :class:`Stage`; the loop in ``loop.py`` is the same for all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from core.checkpoint import CheckpointError, load_weights, read_state_dict
from core.config import SFTokConfig
from core.generator import MaskGITGenerator
from core.maskgit_vqgan import MaskGITVQGAN
from core.perceptual import MissingWeightsError, build_lpips
from core.pretrained import load_pretrained_as
from core.weight_decay import no_weight_decay_names
from core.sftok import SFTok
from core.titok import TiTok

from .config import TrainConfig
from .data.labels import class_names_for_shards, write_class_names
from .data.loaders import DataError
from .discriminator import PatchDiscriminator
from .distributed import global_normaliser
from .draws import Draws
from .losses import psnr
from .masking import random_masks
from .objectives import GeneratorObjective, PixelObjective, ProxyCodeObjective, TeacherObjective
from .titok_stage import TiTokCodeObjective, titok_evaluate

Batch = dict[str, Any]


class Collectives(Protocol):
    """What a stage may ask of the other ranks (an ``accelerate.Accelerator`` is one; identity on one process)."""

    def gather(self, tensor: torch.Tensor) -> torch.Tensor: ...
    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor: ...


@dataclass
class Stage:
    name: str
    objective: nn.Module
    saved_model: nn.Module  # checkpointed, EMA-averaged and exported at the end
    prepare: Callable[[Batch, Draws], dict[str, Any]]  # batch -> objective kwargs (all random draws here)
    evaluate: Callable[[nn.Module, Batch, int], tuple[dict[str, float], torch.Tensor | None]]
    after_step: Callable[[int, dict[str, Any], Collectives], dict[str, float]] | None = None  # same on every rank
    discriminator: nn.Module | None = None
    notes: list[str] = field(default_factory=list)
    export_extras: Callable[[Path], None] | None = None  # writes extra files beside the exported weights

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.saved_model.named_parameters() if p.requires_grad]


def _load_frozen(path: str, expected: type, field_name: str, device: torch.device) -> nn.Module:
    """A saved model that a stage reads but never trains: checked type, eval mode, no gradients."""
    model = load_pretrained_as(path, expected, field_name)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_teacher(cfg: TrainConfig, device: torch.device) -> MaskGITVQGAN:
    return _load_frozen(cfg.teacher_path, MaskGITVQGAN, "teacher_path", device)


def _maybe_lpips(weight: float, path: str, notes: list[str]) -> nn.Module | None:
    if weight <= 0:
        return None
    try:
        return build_lpips("vgg", path or None)
    except MissingWeightsError as err:
        notes.append(f"LPIPS term disabled: {err}")
        return None


def _render(tok: SFTok, records: list, soft: bool) -> torch.Tensor:
    if soft:
        return tok.render_soft(records[-1].logits)
    return tok.render_codes(records[-1].ids_out)


def _tokenizer_eval(cfg: TrainConfig, teacher: MaskGITVQGAN | None) -> Callable:
    def evaluate(tok: SFTok, batch: Batch, step: int) -> tuple[dict[str, float], torch.Tensor]:
        images = batch["image"]
        if teacher is not None:
            tok.attach_teacher(teacher)
        _, info = tok.encode(images)
        ids = info["min_encoding_indices"]
        metrics = {"eval/codebook_used": float(ids.unique().numel()) / tok.config.codebook_size}
        shown = [images]
        for n in cfg.eval_num_steps:
            gen = torch.Generator(device=images.device).manual_seed(cfg.seed)
            records = tok.decode_steps(ids, num_steps=n, generator=gen)
            recon = _render(tok, records, soft=tok.has_pixel_head)
            metrics[f"eval/psnr@{n}"] = float(psnr(recon, images).mean())
            if teacher is not None:
                target = teacher.encode(images)
                metrics[f"eval/code_acc@{n}"] = float((records[-1].ids_out == target).float().mean())
            if n in (min(cfg.eval_num_steps), max(cfg.eval_num_steps)):
                shown.append(recon)
        return metrics, torch.cat(shown, dim=3)
    return evaluate


def _bare_file_config(path: str, model_cfg: SFTokConfig) -> SFTokConfig | None:
    """The config a bare weights file (the official ``pytorch_model.bin`` of an earlier stage, named by
    ``experiment.init_weight``) is read with: this run's model shape, with a pixel head only when the file
    holds one. Folders carry their own config (None)."""
    if Path(path).is_dir():
        return None
    has_pixel_head = any(key.startswith("pixel_") for key in read_state_dict(path))
    return model_cfg.replace(has_pixel_head=has_pixel_head)


def _tokenizer_for_stage(cfg: TrainConfig, device: torch.device, teacher: MaskGITVQGAN | None) -> SFTok:
    model_cfg = cfg.model_config()
    tok = SFTok(model_cfg)
    if cfg.init_weights:
        init = load_pretrained_as(cfg.init_weights, SFTok, "init_weights", strict=False,
                                  config=_bare_file_config(cfg.init_weights, model_cfg))
        state = init.state_dict()
        if model_cfg.has_pixel_head and not init.has_pixel_head:
            if teacher is None:
                raise CheckpointError("stage 3 from a stage-2 model needs teacher_path to initialise the pixel head")
            for key, value in teacher.state_dict().items():
                if not key.startswith("encoder."):
                    state[f"pixel_{key}"] = value  # official init: teacher decoder + codebook -> pixel head
        load_weights(tok, state, strict=True, source=cfg.init_weights)
    if cfg.decoder_init.reset_code_embeddings:
        tok.decoder.reset_code_embeddings(torch.Generator().manual_seed(cfg.seed))
    if cfg.decoder_init.reset_mask_embedding:
        tok.decoder.reset_mask_embedding(torch.Generator().manual_seed(cfg.seed + 1))
    if cfg.decoder_init.sincos_slot_positions:
        tok.decoder.add_sincos_slot_positions()
    return tok.to(device)


def own_guess_slots(draws: Draws, slots: int, replace_prob: float, device: torch.device) -> torch.Tensor:
    """(B, S) bool, per sample: which context slots hold the model's own guess (else the teacher's code)."""
    return draws.per_sample(lambda g: torch.rand(1, slots, generator=g) < replace_prob).to(device)


def _proxy_codes(batch: Batch, teacher: MaskGITVQGAN | None) -> torch.Tensor:
    if "proxy_codes" in batch:
        return batch["proxy_codes"].long()
    assert teacher is not None
    return teacher.encode(batch["image"])


def _index_unique_ratio(step: int, out: dict[str, Any], ranks: Collectives) -> dict[str, float]:
    """Share of distinct ids among the batch's token ids (codebook collapse shows here first)."""
    ids = out["indices"]
    return {"train/index_unique_ratio": float(ids.unique().numel()) / ids.numel()}


def build_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    builder = {"teacher": _teacher_stage, "1": _code_stage, "2": _code_stage, "3": _pixel_stage, "generator": _generator_stage}
    return builder[cfg.stage](cfg, device)


def _code_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    teacher = _load_teacher(cfg, device)
    if cfg.model_family == "titok":
        return _titok_stage(cfg, device, teacher)
    tok = _tokenizer_for_stage(cfg, device, teacher)
    stage2 = cfg.stage == "2"
    sfvr = cfg.sfvr if stage2 else None
    objective = ProxyCodeObjective(tok, cfg.loss, sfvr, normaliser=global_normaliser)
    slots = tok.config.num_proxy_codes

    def prepare(batch: Batch, draws: Draws) -> dict[str, Any]:
        images = batch["image"].to(device)
        codes = _proxy_codes({**batch, "image": images}, teacher).to(device)
        b = images.shape[0]
        if not stage2:  # warm-up: every slot masked, single-step prediction
            return {"images": images, "teacher_codes": codes, "masks": torch.ones(b, slots, dtype=torch.bool, device=device)}
        masks = draws.per_sample(lambda g: random_masks(1, slots, g, cfg.sfvr.mask_schedule)).to(device)
        use_own = None
        if cfg.sfvr.enabled:
            use_own = own_guess_slots(draws, slots, cfg.sfvr.replace_prob, device)
        return {"images": images, "teacher_codes": codes, "masks": masks, "use_own": use_own, "generator": draws.batch}

    return Stage(cfg.stage, objective, tok, prepare, _tokenizer_eval(cfg, teacher), _index_unique_ratio)


def _titok_stage(cfg: TrainConfig, device: torch.device, teacher: MaskGITVQGAN) -> Stage:
    """Stage 1 with ``model_family=titok``: a TiTok of the preset's sizes, trained from scratch (trainers.titok_stage)."""
    model = TiTok(cfg.titok_config()).to(device)
    objective = TiTokCodeObjective(model, cfg.loss, cfg.model_config().commitment_cost, normaliser=global_normaliser)

    def prepare(batch: Batch, draws: Draws) -> dict[str, Any]:
        images = batch["image"].to(device)
        return {"images": images, "teacher_codes": _proxy_codes({**batch, "image": images}, teacher).to(device)}

    return Stage(cfg.stage, objective, model, prepare, titok_evaluate(teacher), _index_unique_ratio)


def _pixel_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    teacher = _load_teacher(cfg, device) if cfg.teacher_path else None
    tok = _tokenizer_for_stage(cfg, device, teacher)
    for module in (tok.encoder, tok.quantize):
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    tok.latent_tokens.requires_grad_(False)
    notes: list[str] = []
    lpips = _maybe_lpips(cfg.stage3.lpips_weight, cfg.lpips_weights, notes)
    if lpips is not None:
        lpips.to(device)
    objective = PixelObjective(tok, cfg.stage3.l2_weight, cfg.stage3.lpips_weight, lpips, cfg.stage3.code_ce_weight,
                               global_normaliser)
    disc = _discriminator(cfg)
    if disc is not None:
        disc.to(device)
    slots = tok.config.num_proxy_codes
    teacher_context = cfg.sfvr.replace_prob < 1.0  # some context slots hold the teacher's codes (not in the paper)

    def prepare(batch: Batch, draws: Draws) -> dict[str, Any]:
        images = batch["image"].to(device)
        out = {"images": images,
               "masks": draws.per_sample(lambda g: random_masks(1, slots, g, cfg.sfvr.mask_schedule)).to(device)}
        if objective.code_ce_weight > 0 or teacher_context:
            out["teacher_codes"] = _proxy_codes({**batch, "image": images}, teacher).to(device)
        if teacher_context:  # drawn only then, so the official recipe's random stream is unchanged
            out["use_own"] = own_guess_slots(draws, slots, cfg.sfvr.replace_prob, device)
        return out

    return Stage("3", objective, tok, prepare, _tokenizer_eval(cfg, None), None, disc, notes)


def _discriminator(cfg: TrainConfig) -> nn.Module | None:
    if cfg.stage3.gan_weight <= 0 or cfg.stage3.discriminator == "none":
        return None
    if cfg.stage3.discriminator == "dino":
        from .dino_discriminator import DinoDiscriminator

        return DinoDiscriminator(cfg.stage3.dino_weights)
    return PatchDiscriminator()


def _teacher_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    teacher_cfg = cfg.model_config().teacher
    teacher = MaskGITVQGAN(teacher_cfg).to(device)
    notes: list[str] = []
    lpips = _maybe_lpips(cfg.teacher_train.perceptual_weight, cfg.lpips_weights, notes)
    objective = TeacherObjective(teacher, cfg.teacher_train.perceptual_weight, lpips)
    usage = torch.zeros(teacher_cfg.codebook_size, dtype=torch.long)

    def prepare(batch: Batch, draws: Draws) -> dict[str, Any]:
        return {"images": batch["image"].to(device)}

    def after_step(step: int, out: dict[str, Any], ranks: Collectives) -> dict[str, float]:
        """Dead-code restarts from all ranks' usage and encoder outputs, so every rank edits the codebook alike."""
        usage.add_(torch.bincount(out["ids"].flatten().cpu(), minlength=usage.numel()))
        every = cfg.teacher_train.restart_dead_codes_every
        metrics = {}
        if every and (step + 1) % every == 0:
            usage.copy_(ranks.reduce(usage.to(device), "sum").cpu())
            dead = (usage == 0).nonzero().flatten()
            if dead.numel():
                z_all = ranks.gather(out["z"].contiguous())
                z = z_all.permute(0, 2, 3, 1).reshape(-1, z_all.shape[1])
                pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=torch.Generator().manual_seed(step))
                with torch.no_grad():
                    teacher.quantize.embedding.weight[dead.to(device)] = z[pick.to(z.device)].to(device)
            metrics["train/dead_codes_restarted"] = float(dead.numel())
            usage.zero_()
        return metrics

    def evaluate(model: MaskGITVQGAN, batch: Batch, step: int) -> tuple[dict[str, float], torch.Tensor]:
        images = batch["image"].to(device)
        ids = model.encode(images)
        recon = model.decode_codes(ids)
        return ({"eval/psnr": float(psnr(recon, images).mean()),
                 "eval/codebook_used": float(ids.unique().numel()) / teacher_cfg.codebook_size},
                torch.cat([images, recon], dim=3))

    return Stage("teacher", objective, teacher, prepare, evaluate, after_step, None, notes)


def _generator_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    tok = _load_frozen(cfg.tokenizer_path, SFTok, "tokenizer_path", device)
    gen_model = MaskGITGenerator(cfg.generator_config(tok.config.codebook_size, tok.config.num_latent_tokens)).to(device)
    objective = GeneratorObjective(gen_model, cfg.generator_train.label_smoothing, cfg.generator_train.unmasked_weight,
                                   normaliser=global_normaliser)
    n = gen_model.config.num_tokens

    def sample_draws(g: torch.Generator) -> torch.Tensor:
        """One sample's mask (n slots, arccos schedule, at least one masked) and class-dropout flag, as (1, n + 1)."""
        masks = random_masks(1, n, g, "arccos", min_masked=1)
        drop = torch.rand(1, 1, generator=g) < cfg.generator_train.class_dropout
        return torch.cat([masks, drop], dim=1)

    def class_ids(batch: Batch, limit: int | None = None) -> torch.Tensor:
        """The batch's class ids, refusing ids the generator has no embedding for (never merged silently)."""
        classes = batch["class_id"][:limit].to(device).long()
        bad = classes[(classes < 0) | (classes >= gen_model.config.num_classes)]
        if bad.numel():
            raise DataError(f"class id {int(bad[0])} in the data, but the generator has "
                            f"{gen_model.config.num_classes} classes (0..{gen_model.config.num_classes - 1}): "
                            f"set generator.num_classes to at least {int(classes.max()) + 1}")
        return classes

    def prepare(batch: Batch, draws: Draws) -> dict[str, Any]:
        images = batch["image"].to(device)
        with torch.no_grad():
            tokens = tok.encode(images)[1]["min_encoding_indices"][:, 0]
        drawn = draws.per_sample(sample_draws).to(device)
        masks, drop = drawn[:, :n], drawn[:, n]
        classes = class_ids(batch)
        return {"tokens": tokens, "class_ids": classes, "masks": masks, "drop_class": drop}

    def evaluate(model: MaskGITGenerator, batch: Batch, step: int) -> tuple[dict[str, float], torch.Tensor]:
        classes = class_ids(batch, 4)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        ids, _ = model.generate(classes, num_steps=8, generator=gen)
        images = tok.decode_tokens(ids, generator=gen) if tok.has_pixel_head else None
        prepared = prepare(batch, Draws.make(cfg.seed, 0, 0, batch["image"].shape[0]))
        with torch.no_grad():
            acc = GeneratorObjective(model, 0.0, 1.0)(**prepared)["accuracy_masked"]
        return {"eval/accuracy_masked": float(acc)}, images

    def export_extras(model_dir: Path) -> None:
        names = class_names_for_shards(cfg.data.train_shards, gen_model.config.num_classes)
        if names:
            write_class_names(model_dir, names)

    return Stage("generator", objective, gen_model, prepare, evaluate, export_extras=export_extras)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups with the official rule (:mod:`core.weight_decay`): no decay for 1-D params, norms,
    biases, embeddings and learned tokens."""
    exempt = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

