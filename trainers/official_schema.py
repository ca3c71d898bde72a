"""Every key of the official SFTok YAML layout, its type, and what it means here.

The official repository's five ``configs/*.yaml`` (three tokenizer stages, the generator, inference)
use 102 dotted keys. Each one is listed here with one rule, so nothing in an official file is
silently dropped:

- :class:`Maps` - the value becomes one of our fields (optionally through a value table);
- :class:`Fixed` - our code implements exactly this value; any other is refused;
- :class:`Same` - must equal another official key (the official files interpolate it);
- :class:`Derived` - translated together with other keys (see :mod:`trainers.official_config`);
- :class:`Ignored` - has no meaning here; named in the "ignored" note and in the README.

A rule may differ per ``--stage`` (``OfficialKey.stages``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

NoneType = type(None)


@dataclass(frozen=True)
class Maps:
    target: str  # our dotted field; "optim.betas[1]" addresses one entry of a list
    values: Mapping[Any, Any] | None = None  # official value -> ours; other values are refused


@dataclass(frozen=True)
class Fixed:
    value: Any
    why: str


@dataclass(frozen=True)
class Same:
    other: str  # official key this one must equal


@dataclass(frozen=True)
class Derived:
    what: str


@dataclass(frozen=True)
class Ignored:
    why: str


Rule = Union[Maps, Fixed, Same, Derived, Ignored]


@dataclass(frozen=True)
class OfficialKey:
    kinds: tuple[type, ...]  # accepted Python types after YAML parsing (floats also from "1e-4" strings)
    rule: Rule
    stages: Mapping[str, Rule] = field(default_factory=dict)  # per-stage rules replacing ``rule``

    def rule_for(self, stage: str) -> Rule:
        return self.stages.get(stage, self.rule)


INT, FLOAT, BOOL, STR, NULL = (int,), (float,), (bool,), (str,), (NoneType,)
TOKENIZER_STAGES = ("1", "2", "3")
_GENERATOR_ONLY = "a generator setting; read by --stage generator only"
_NOT_GENERATOR = "the generator stage reads a trained tokenizer (tokenizer_path) instead"


def _stage_flag(true_in: str, meaning: str) -> dict[str, Rule]:
    """A boolean that must be true exactly in stage ``true_in`` (among the tokenizer stages)."""
    return {s: Fixed(s == true_in, f"{meaning}; it is {str(s == true_in).lower()} for --stage {s}") for s in TOKENIZER_STAGES}


def _generator(target: str) -> OfficialKey:
    return OfficialKey(INT if target != "generator.dropout" else FLOAT, Ignored(_GENERATOR_ONLY),
                       {"generator": Maps(target)})


OFFICIAL_KEYS: dict[str, OfficialKey] = {
    # -- experiment ------------------------------------------------------------------------------
    "experiment.project": OfficialKey(STR, Ignored("tracker project name; runs are tracked by their --run-dir")),
    "experiment.name": OfficialKey(STR, Ignored("tracker run name; runs are tracked by their --run-dir")),
    "experiment.output_dir": OfficialKey(STR, Ignored("where the run writes: give --run-dir")),
    "experiment.max_train_examples": OfficialKey(INT, Ignored("epoch length of the resampled shard stream; "
                                                              "the loader here streams without epochs")),
    "experiment.save_every": OfficialKey(INT, Maps("save_every")),
    "experiment.eval_every": OfficialKey(INT, Maps("eval_every")),
    "experiment.generate_every": OfficialKey(INT, Ignored("image dumps: every evaluation writes its images")),
    "experiment.log_every": OfficialKey(INT, Maps("log_every")),
    "experiment.log_grad_norm_every": OfficialKey(INT, Ignored("per-parameter gradient-norm logging; the total "
                                                               "norm is logged every log_every steps")),
    "experiment.resume": OfficialKey(BOOL, Ignored("resuming is explicit: pass --resume")),
    "experiment.init_weight": OfficialKey(STR, Maps("init_weights")),
    "experiment.tokenizer_checkpoint": OfficialKey(STR, Ignored("the frozen tokenizer of --stage generator"),
                                                   {"generator": Maps("tokenizer_path")}),
    "experiment.generator_checkpoint": OfficialKey(STR, Ignored("read by the official sampling script only")),
    # -- model: tokenizer ------------------------------------------------------------------------
    "model.model_type": OfficialKey(STR, Fixed("sftok", "the only tokenizer here is SFTok")),
    "model.vq_model.codebook_size": OfficialKey(INT, Maps("model.codebook_size")),
    "model.vq_model.token_size": OfficialKey(INT, Maps("model.token_size")),
    "model.vq_model.use_l2_norm": OfficialKey(BOOL, Fixed(True, "OptVQ always L2-normalises")),
    "model.vq_model.commitment_cost": OfficialKey(FLOAT, Maps("model.commitment_cost")),
    "model.vq_model.vit_enc_model_size": OfficialKey(STR, Maps("model.encoder")),
    "model.vq_model.vit_enc_patch_size": OfficialKey(INT, Maps("model.patch_size")),
    "model.vq_model.vit_dec_model_size": OfficialKey(STR, Derived("decoder size (TiTok's place for it)")),
    "model.vq_model.num_latent_tokens": OfficialKey(INT, Maps("model.num_latent_tokens")),
    "model.vq_model.num_group": OfficialKey(INT, Fixed(1, "OptVQ here has one group")),
    "model.vq_model.finetune_decoder": OfficialKey(
        BOOL, Ignored(_NOT_GENERATOR), _stage_flag("3", "true means the stage-3 pixel fine-tune")),
    "model.vq_model.semantic_guide": OfficialKey(NULL + STR, Fixed(None, "no semantic guidance (null everywhere)")),
    "model.vq_model.pretrained_tokenizer_weight": OfficialKey(STR, Maps("teacher_path"),
                                                              {"generator": Ignored(_NOT_GENERATOR)}),
    "model.decoder.vit_dec_model_size": OfficialKey(STR, Derived("decoder size and model preset")),
    "model.decoder.vit_dec_patch_size": OfficialKey(INT, Fixed(16, "the proxy grid is the teacher's 16x16")),
    "model.decoder.num_latent_tokens": OfficialKey(INT, Same("model.vq_model.num_latent_tokens")),
    "model.decoder.token_size": OfficialKey(INT, Same("model.vq_model.token_size")),
    "model.decoder.num_proxy_codes": OfficialKey(INT, Derived("must be (crop_size / 16) ** 2")),
    "model.decoder.codebook_size": OfficialKey(INT, Maps("model.teacher.codebook_size")),
    "model.decoder.finetune_decoder": OfficialKey(BOOL, Ignored("not read by the official code "
                                                                "(model.vq_model.finetune_decoder is)")),
    "model.decoder.semantic_guide": OfficialKey(NULL + STR, Fixed(None, "no semantic guidance (null everywhere)")),
    "model.decoder.randomize_temperature": OfficialKey(FLOAT, Maps("model.randomize_temperature")),
    "model.decoder.guidance_scale": OfficialKey(FLOAT, Ignored("guidance is a no-op in the official decoder "
                                                               "(cond_drop_prob is never used)")),
    "model.decoder.guidance_decay": OfficialKey(STR, Ignored("guidance is a no-op in the official decoder")),
    "model.decoder.embedding_width": OfficialKey(INT, Ignored("ignored by the official code too: the proxy-code "
                                                              "embedding is as wide as the decoder")),
    "model.decoder.embedding_init": OfficialKey(BOOL, Fixed(False, "embeddings use the default initialisation")),
    "model.decoder.replace_prob": OfficialKey(FLOAT, Maps("sfvr.replace_prob")),
    # -- model: generator ------------------------------------------------------------------------
    "model.img_generator.model_type": OfficialKey(STR, Fixed("ViT", "the generator is the official ImageBert")),
    "model.img_generator.hidden_size": _generator("generator.hidden_size"),
    "model.img_generator.num_hidden_layers": _generator("generator.num_layers"),
    "model.img_generator.num_attention_heads": _generator("generator.num_heads"),
    "model.img_generator.intermediate_size": _generator("generator.intermediate_size"),
    "model.img_generator.dropout": _generator("generator.dropout"),
    "model.img_generator.attn_drop": OfficialKey(FLOAT, Same("model.img_generator.dropout")),
    "model.img_generator.class_label_dropout": OfficialKey(FLOAT, Ignored(_GENERATOR_ONLY),
                                                           {"generator": Maps("generator_train.class_dropout")}),
    "model.img_generator.condition_num_classes": _generator("generator.num_classes"),
    "model.img_generator.image_seq_len": OfficialKey(INT, Same("model.vq_model.num_latent_tokens")),
    "model.img_generator.num_steps": OfficialKey(INT, Ignored("a sampling setting: pass it when generating")),
    "model.img_generator.randomize_temperature": OfficialKey(FLOAT, Ignored("a sampling setting: pass it when generating")),
    "model.img_generator.guidance_scale": OfficialKey(FLOAT, Ignored("a sampling setting: pass it when generating")),
    "model.img_generator.guidance_decay": OfficialKey(STR, Ignored("a sampling setting: pass it when generating")),
    # -- losses ----------------------------------------------------------------------------------
    "losses.quantizer_weight": OfficialKey(FLOAT, Maps("loss.quantizer_weight"), {"3": Ignored(
        "a constant in stage 3: encoder and quantiser are frozen")}),
    "losses.label_smoothing": OfficialKey(FLOAT, Maps("loss.label_smoothing"),
                                          {"generator": Maps("generator_train.label_smoothing")}),
    "losses.loss_weight_unmasked_token": OfficialKey(FLOAT, Maps("loss.unmasked_weight"),
                                                     {"generator": Maps("generator_train.unmasked_weight")}),
    "losses.discriminator_type": OfficialKey(STR, Maps("stage3.discriminator", {"dinodisc": "dino"})),
    "losses.discriminator_start": OfficialKey(INT, Maps("stage3.disc_start")),
    "losses.discriminator_factor": OfficialKey(FLOAT, Fixed(1.0, "the GAN term is weighted by "
                                                                 "losses.discriminator_weight alone")),
    "losses.discriminator_weight": OfficialKey(FLOAT, Maps("stage3.gan_weight")),
    "losses.perceptual_loss": OfficialKey(STR, Fixed("lpips", "the perceptual term is LPIPS-VGG")),
    "losses.perceptual_weight": OfficialKey(FLOAT, Maps("stage3.lpips_weight")),
    "losses.reconstruction_loss": OfficialKey(STR, Fixed("l2", "the pixel term is L2")),
    "losses.reconstruction_weight": OfficialKey(FLOAT, Maps("stage3.l2_weight")),
    "losses.lecam_regularization_weight": OfficialKey(FLOAT, Fixed(0.001, "built into the DINO discriminator's loss")),
    # -- dataset ---------------------------------------------------------------------------------
    "dataset.params.train_shards_path_or_url": OfficialKey(STR, Maps("data.train_shards")),
    "dataset.params.eval_shards_path_or_url": OfficialKey(STR, Maps("data.eval_shards")),
    "dataset.params.num_workers_per_gpu": OfficialKey(INT, Maps("data.num_workers")),
    "dataset.params.dataset_type": OfficialKey(STR, Fixed("simple_image_dataset", "shards hold jpg + cls samples")),
    "dataset.preprocessing.resize_shorter_edge": OfficialKey(INT, Same("dataset.preprocessing.crop_size")),
    "dataset.preprocessing.crop_size": OfficialKey(INT, Maps("model.image_size")),
    "dataset.preprocessing.random_crop": OfficialKey(BOOL, Maps("data.random_crop")),
    "dataset.preprocessing.random_flip": OfficialKey(BOOL, Maps("data.flip")),
    # -- optimiser and schedule ------------------------------------------------------------------
    "optimizer.name": OfficialKey(STR, Fixed("adamw", "the optimiser is AdamW")),
    "optimizer.params.learning_rate": OfficialKey(FLOAT, Maps("optim.lr")),
    "optimizer.params.discriminator_learning_rate": OfficialKey(FLOAT, Maps("stage3.disc_lr")),
    "optimizer.params.beta1": OfficialKey(FLOAT, Maps("optim.betas[0]")),
    "optimizer.params.beta2": OfficialKey(FLOAT, Maps("optim.betas[1]")),
    "optimizer.params.weight_decay": OfficialKey(FLOAT, Maps("optim.weight_decay")),
    "lr_scheduler.scheduler": OfficialKey(STR, Fixed("cosine", "the schedule is linear warm-up + cosine")),
    "lr_scheduler.params.learning_rate": OfficialKey(FLOAT, Same("optimizer.params.learning_rate")),
    "lr_scheduler.params.warmup_steps": OfficialKey(INT, Maps("optim.warmup_steps")),
    "lr_scheduler.params.end_lr": OfficialKey(FLOAT, Maps("optim.end_lr")),
    # -- training --------------------------------------------------------------------------------
    "training.gradient_accumulation_steps": OfficialKey(INT, Derived("folded into data.batch_size")),
    "training.per_gpu_batch_size": OfficialKey(INT, Maps("data.batch_size")),
    "training.mixed_precision": OfficialKey(STR, Maps("mixed_precision")),
    "training.enable_tf32": OfficialKey(BOOL, Ignored("TF32 follows PyTorch's defaults")),
    "training.enable_wandb": OfficialKey(BOOL, Ignored("metrics go to metrics.jsonl and the workbench's DuckDB store")),
    "training.use_ema": OfficialKey(BOOL, Maps("ema")),
    "training.seed": OfficialKey(INT, Maps("seed")),
    "training.max_train_steps": OfficialKey(INT, Maps("max_steps")),
    "training.num_generated_images": OfficialKey(INT, Ignored("image dumps: every evaluation writes its images")),
    "training.max_grad_norm": OfficialKey(FLOAT, Maps("optim.max_grad_norm")),
    "training.use_mlmloss": OfficialKey(BOOL, Fixed(True, "stages 1-2 train the masked proxy-code cross-entropy")),
    "training.single_step_generation": OfficialKey(
        BOOL, Ignored(_NOT_GENERATOR), _stage_flag("1", "true means the stage-1 warm-up (every slot masked)")),
    "training.guided_mask": OfficialKey(BOOL, Ignored(_NOT_GENERATOR), {
        "1": Ignored("stage 1 masks every slot, so there is no context to guide"),
        "2": Maps("sfvr.enabled"),
        "3": Fixed(True, "stage 3 always uses the model's own first-pass prediction as context")}),
    "training.mask_schedule": OfficialKey(STR, Maps("sfvr.mask_schedule")),
    "training.mask_power": OfficialKey(FLOAT, Fixed(1.0, "the mask ratio is the schedule itself")),
    "training.min_mask_ratio": OfficialKey(FLOAT, Fixed(0.0, "mask ratios span [0, 1]")),
    "training.max_mask_ratio": OfficialKey(FLOAT, Fixed(1.0, "mask ratios span [0, 1]")),
    "training.use_soft_proxycodes": OfficialKey(BOOL, Fixed(False, "the official loop never builds soft targets")),
    "training.soft_proxycode_sigma": OfficialKey(FLOAT, Ignored("only read with use_soft_proxycodes, which is off")),
}

# First segments that only the official layout uses (``model`` is shared: see ``is_official_override``).
OFFICIAL_SECTIONS = frozenset(k.split(".")[0] for k in OFFICIAL_KEYS) - {"model"}
OFFICIAL_MODEL_SECTIONS = frozenset(k.split(".")[1] for k in OFFICIAL_KEYS if k.startswith("model."))


def is_official_path(path: list[str]) -> bool:
    """Whether a dotted key belongs to the official layout (as opposed to ours)."""
    if not path:
        return False
    if path[0] in OFFICIAL_SECTIONS:
        return True
    return path[0] == "model" and len(path) > 1 and path[1] in OFFICIAL_MODEL_SECTIONS


def ignored_keys(stage: str) -> dict[str, str]:
    """Official key -> why it means nothing for ``stage`` (the README lists these)."""
    return {k: r.why for k, spec in OFFICIAL_KEYS.items() if isinstance(r := spec.rule_for(stage), Ignored)}
