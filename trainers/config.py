"""Training configuration: one dataclass tree with every default in one place, validated up front.

A run file (YAML) is a small diff over ``default_config(stage)``; ``key.sub=value`` overrides go on
top. Any invalid value is rejected before a model is built, with the dotted field name and what is
allowed (an unknown name gets the nearest valid one suggested). Official YAMLs (``training.*``,
``optimizer.params.*``, ``model.vq_model.*``, ...) and official-layout overrides on top of them are
translated by :mod:`trainers.official_config`; errors then name the official key that was written.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from core.config import ConfigError, SFTokConfig
from core.generator import GENERATOR_PRESETS, GeneratorConfig
from core.presets import PRESETS
from core.titok import TiTokConfig

from .official_config import is_official_layout, translate_official
from .official_schema import OFFICIAL_KEYS, Maps, is_official_path
from .suggest import unknown_key

from .stage_names import STAGES
CHOICES: dict[str, tuple[str, ...]] = {
    "stage": STAGES,
    "model_family": ("sftok", "titok"),
    "model_preset": tuple(PRESETS),
    "generator_preset": tuple(GENERATOR_PRESETS),
    "mixed_precision": ("no", "fp16", "bf16"),
    "sfvr.context_source": ("first", "prev"),
    "sfvr.mask_schedule": ("arccos", "linear", "cosine", "square"),
    "stage3.discriminator": ("patchgan", "dino", "none"),
    "device": ("auto", "cpu", "cuda"),
}


@dataclass
class DataConfig:
    train_shards: str = ""
    eval_shards: str = ""
    batch_size: int = 32
    eval_batch_size: int = 16
    num_workers: int = 0
    random_crop: bool = True
    flip: bool = True
    use_proxy_cache: bool = False  # read teacher codes stored in the shards instead of running the teacher
    shuffle: bool = True  # False: each rank reads its shards in order, cyclically (reproducible known-answer runs)


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000
    end_lr: float = 1e-5
    max_grad_norm: float = 1.0
    schedule_steps: int = 0  # length of the warm-up + cosine schedule; 0 = max_steps (>0: stop early on a longer one)


@dataclass
class LossConfig:
    unmasked_weight: float = 0.1  # weight of context (unmasked) slots in the proxy-code cross-entropy
    label_smoothing: float = 0.0
    quantizer_weight: float = 1.0


@dataclass
class SFVRConfig:
    """Stage-2 ablation switches (self-forcing guided visual reconstruction)."""

    enabled: bool = True  # False = vanilla: context slots hold the teacher's codes
    replace_prob: float = 1.0  # per context slot, probability of using the model's own prediction
    context_source: str = "first"  # "first": all-masked first pass; "prev": prediction at step n-1 of a decode
    context_steps: int = 8  # decode length whose (n-1)-th step feeds the context when context_source="prev"
    mask_schedule: str = "arccos"


@dataclass
class DecoderInitConfig:
    """Changes to the decoder right after ``init_weights`` load (stages 1-2; not in the official recipe).

    On the 64 px default, a stage-2 decoder from a stage-1 model whose code table was PyTorch's N(0, 1)
    did not learn to read revealed codes in 1500 steps; with both switches (and lr 1e-3) it did within 1000.
    """

    reset_code_embeddings: bool = False  # code rows of the input table -> N(0, 0.02) (stage 1 never trained them)
    sincos_slot_positions: bool = False  # add a 2-D sine-cosine grid to the slots' positional embeddings
    reset_mask_embedding: bool = False  # the mask row -> N(0, 0.02), so positions tell stage 1's all-masked slots apart

    def any(self) -> bool:
        return self.reset_code_embeddings or self.sincos_slot_positions or self.reset_mask_embedding


@dataclass
class TeacherTrainConfig:
    restart_dead_codes_every: int = 200  # re-seed unused codewords from encoder outputs (0 = off)
    perceptual_weight: float = 0.0  # LPIPS weight; needs lpips_weights


@dataclass
class Stage3Config:
    l2_weight: float = 1.0
    lpips_weight: float = 1.0  # needs lpips_weights; without them the term is off and the run says so
    gan_weight: float = 0.5
    disc_start: int = 20_000
    discriminator: str = "patchgan"  # "dino": the official frozen-DINO discriminator (needs dino_weights)
    disc_lr: float = 1e-4
    dino_weights: str = ""  # local dino_deitsmall16_pretrain.pth for discriminator=dino
    # Not in the paper (0 = official): cross-entropy of the decoder's logits against the teacher's codes, added
    # so stage 3 keeps them a model of the codes. L2 alone turns the logits into mixing weights for the soft
    # render, and code-level analyses (information gain, leave-one-out MI) of such a model measure nothing.
    code_ce_weight: float = 0.0


@dataclass
class GeneratorTrainConfig:
    label_smoothing: float = 0.1
    class_dropout: float = 0.1
    unmasked_weight: float = 0.1


@dataclass
class TrainConfig:
    stage: str = "1"
    model_preset: str = "tiny"
    # "titok": stage 1 trains a TiTok of the preset's sizes instead (one step, every slot masked: TiTok's own
    # proxy-code stage, the baseline SFTok's multi-step decoding improves on); see titok_config
    model_family: str = "sftok"
    model: dict[str, Any] = field(default_factory=dict)  # SFTokConfig field overrides
    generator_preset: str = "tiny"
    generator: dict[str, Any] = field(default_factory=dict)  # GeneratorConfig field overrides
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sfvr: SFVRConfig = field(default_factory=SFVRConfig)
    decoder_init: DecoderInitConfig = field(default_factory=DecoderInitConfig)
    teacher_train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    stage3: Stage3Config = field(default_factory=Stage3Config)
    generator_train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    max_steps: int = 1000
    seed: int = 42
    device: str = "auto"
    mixed_precision: str = "no"  # fp16/bf16 apply on GPU only; CPU runs in fp32
    dist_timeout_s: int = 1800  # multi-process runs: a collective waiting longer than this fails (a dead/stuck rank)
    log_every: int = 10
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 2
    ema: bool = True
    eval_num_steps: tuple[int, ...] = (1, 2, 4, 8)
    teacher_path: str = ""  # MaskGIT-VQGAN folder or weights file (stages 1-3)
    init_weights: str = ""  # start from these weights (stage 2 <- stage 1, stage 3 <- stage 2 EMA)
    tokenizer_path: str = ""  # frozen SFTok for the generator stage
    lpips_weights: str = ""  # local VGG16 weights for LPIPS (vgg16-397923af.pth); empty = torch hub cache

    # -- derived ----------------------------------------------------------------------------------
    def titok_config(self) -> TiTokConfig:
        """The TiTok of the preset's sizes (ViTs, tokens, codebook, teacher, weight init). TiTok's proxy grid is its patch grid,
        so its patch size is the teacher's downsampling factor (4 on the tiny preset, where SFTok patches by 8)."""
        sftok = self.model_config()
        try:
            return TiTokConfig(image_size=sftok.image_size, patch_size=sftok.teacher.downsample_factor,
                               encoder=sftok.encoder, decoder=sftok.decoder, num_latent_tokens=sftok.num_latent_tokens,
                               token_size=sftok.token_size, codebook_size=sftok.codebook_size, teacher=sftok.teacher,
                               has_pixel_head=False, weight_init=sftok.weight_init)
        except ConfigError as err:
            raise ConfigError(f"model_family: {err}") from err

    def model_config(self) -> SFTokConfig:
        """The preset with ``model.*`` on top (nested sections such as ``model.decoder.width`` merge)."""
        check_fields(self.model, SFTokConfig, "model.")
        base = PRESETS[self.model_preset].to_dict()
        for key, value in self.model.items():
            nested = isinstance(value, Mapping) and isinstance(base.get(key), Mapping)
            base[key] = {**base[key], **value} if nested else value
        base["has_pixel_head"] = self.stage == "3"
        try:
            return SFTokConfig.from_dict(base)
        except ConfigError as err:
            raise ConfigError(f"model.{err}") from err
        except TypeError as err:  # a wrong value type inside a nested section
            raise ConfigError(f"model: {err}") from err

    def generator_config(self, codebook_size: int, num_tokens: int) -> GeneratorConfig:
        """The generator's vocabulary and length follow the tokenizer it models."""
        check_fields(self.generator, GeneratorConfig, "generator.")
        base = GENERATOR_PRESETS[self.generator_preset].to_dict()
        base.update(self.generator)
        base["codebook_size"] = codebook_size
        base["num_tokens"] = num_tokens
        base["class_dropout"] = self.generator_train.class_dropout
        try:
            return GeneratorConfig.from_dict(base)
        except ConfigError as err:
            raise ConfigError(str(err) if str(err).startswith("generator") else f"generator.{err}") from err

    @property
    def schedule_length(self) -> int:
        """Steps the learning-rate schedule spans (``optim.schedule_steps``, else ``max_steps``)."""
        return self.optim.schedule_steps or self.max_steps

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first invalid field; returns self for chaining."""
        for name, allowed in CHOICES.items():
            value = _lookup(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {list(allowed)}")
        positive = ["max_steps", "log_every", "eval_every", "save_every", "keep_last", "data.batch_size", "dist_timeout_s",
                    "data.eval_batch_size", "sfvr.context_steps"]
        for name in positive:
            value = _lookup(self, name)
            if value <= 0:
                raise ConfigError(f"{name}: must be > 0, got {value}")
        non_negative = ["data.num_workers", "optim.lr", "optim.weight_decay", "optim.warmup_steps", "optim.end_lr",
                        "optim.max_grad_norm", "optim.schedule_steps", "loss.unmasked_weight", "loss.quantizer_weight", "stage3.l2_weight",
                        "stage3.lpips_weight", "stage3.gan_weight", "stage3.code_ce_weight", "stage3.disc_start", "stage3.disc_lr",
                        "teacher_train.restart_dead_codes_every", "teacher_train.perceptual_weight",
                        "generator_train.unmasked_weight"]
        for name in non_negative:
            value = _lookup(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name}: must be a finite number >= 0, got {value}")
        for name in ("sfvr.replace_prob", "loss.label_smoothing", "generator_train.label_smoothing", "generator_train.class_dropout"):
            value = _lookup(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name}: must be in [0, 1], got {value}")
        if not 0 <= self.seed < 2**32:  # numpy's seeding (accelerate.set_seed) accepts only this range
            raise ConfigError(f"seed: must be in [0, 2**32 - 1], got {self.seed}")
        for i, beta in enumerate(self.optim.betas):
            if not 0 <= beta < 1:
                raise ConfigError(f"optim.betas[{i}]: must be in [0, 1), got {beta}")
        if len(self.optim.betas) != 2:
            raise ConfigError(f"optim.betas: expected 2 values, got {len(self.optim.betas)}")
        if not self.eval_num_steps or any(not 1 <= s <= 32 for s in self.eval_num_steps):
            raise ConfigError(f"eval_num_steps: each must be in 1..32, got {list(self.eval_num_steps)}")
        if self.optim.end_lr > self.optim.lr:
            raise ConfigError(f"optim.end_lr: {self.optim.end_lr} exceeds optim.lr {self.optim.lr}")
        if not self.data.train_shards:
            raise ConfigError("data.train_shards: required (a shard path, brace pattern or list)")
        init = self.decoder_init
        if self.model_family == "titok" and self.stage != "1":
            raise ConfigError(f"model_family: 'titok' trains its proxy-code stage only (--stage 1), not stage "
                              f"{self.stage!r}; a TiTok folder renders through the teacher")
        if self.model_family == "titok" and (init.any() or self.init_weights):
            raise ConfigError("model_family: 'titok' starts from scratch (no init_weights, no decoder_init)")
        if init.any() and self.stage not in ("1", "2"):
            raise ConfigError(f"decoder_init: applies to stages 1 and 2 only, not stage {self.stage!r}")
        model_cfg = self.model_config()
        if self.model_family == "titok":
            self.titok_config()
        if self.stage == "generator":
            self.generator_config(model_cfg.codebook_size, model_cfg.num_latent_tokens)
            if not self.tokenizer_path:
                raise ConfigError("tokenizer_path: the generator stage needs a trained SFTok folder")
        if self.stage in ("1", "2", "3") and not self.teacher_path and not (self.stage == "3" and self.init_weights):
            raise ConfigError("teacher_path: stages 1-3 need a trained MaskGIT-VQGAN teacher folder")
        if self.stage == "3" and self.stage3.code_ce_weight > 0 and not self.teacher_path:
            raise ConfigError("stage3.code_ce_weight: the code cross-entropy needs teacher_path (the teacher's codes)")
        if self.stage == "3" and self.sfvr.replace_prob < 1 and not self.teacher_path:
            raise ConfigError("sfvr.replace_prob: below 1 in stage 3 some context slots hold the teacher's codes, "
                              "which needs teacher_path")
        if self.stage == "3" and not self.init_weights:
            raise ConfigError("init_weights: stage 3 starts from a stage-2 model (its EMA weights)")
        if self.stage3.discriminator == "dino" and not self.stage3.dino_weights:
            raise ConfigError("stage3.dino_weights: discriminator 'dino' needs the local DINO ViT-S/16 file "
                              "dino_deitsmall16_pretrain.pth; none given")
        if self.data.use_proxy_cache and self.data.random_crop:
            raise ConfigError("data.use_proxy_cache: cached teacher codes require data.random_crop=false")
        return self

    def check_paths(self) -> "TrainConfig":
        """Raise ConfigError naming every path field that points at nothing (relative paths resolve
        against the working directory). Separate from :meth:`validate`, which judges the config alone,
        so a config written for another machine can still be checked for consistency."""
        from .data.shards import expand_shards

        problems = []
        for name in ("data.train_shards", "data.eval_shards"):
            value = _lookup(self, name)
            if value:
                try:
                    expand_shards(value)
                except (FileNotFoundError, ValueError) as err:
                    problems.append(f"{name}: {str(err).removeprefix('shards: ')}")
        needed = {"teacher_path": self.stage in ("1", "2", "3"), "init_weights": True,
                  "tokenizer_path": self.stage == "generator", "lpips_weights": True}
        for name, used in needed.items():
            value = getattr(self, name)
            if used and value and not Path(value).exists():
                problems.append(f"{name}: {value!r} does not exist")
        dino = self.stage3.dino_weights
        if self.stage3.discriminator == "dino" and not Path(dino).is_file():
            problems.append(f"stage3.dino_weights: discriminator 'dino' needs the local DINO ViT-S/16 file "
                            f"dino_deitsmall16_pretrain.pth; got {dino!r}, which is not a file")
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _lookup(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML value to the annotated type or raise ConfigError naming the field."""
    origin = typing.get_origin(hint)
    if hint in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(hint)
        inner = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise ConfigError(f"{name}: expected 2 values, got {len(value)}")
        return tuple(_coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"{name}: unsupported type")  # pragma: no cover


def _unknown_field(name: str, allowed: Sequence[str]) -> ConfigError:
    """Names the nearest valid field; for an official-layout key, its name in our layout."""
    official = OFFICIAL_KEYS.get(name)
    if official is None:
        return ConfigError(unknown_key(name, allowed))
    rule = official.rule
    here = f"did you mean {rule.target!r}? " if isinstance(rule, Maps) else ""
    return ConfigError(f"{name}: unknown field; {here}({name} is an official-layout key: those apply on top of "
                       "an official YAML given with --config)")


def _first_leaf(name: str, value: Any) -> str:
    """``training`` + {"per_gpu_batch_size": 32} -> "training.per_gpu_batch_size" (what the user typed)."""
    while isinstance(value, Mapping) and len(value) == 1:
        key, value = next(iter(value.items()))
        name = f"{name}.{key}"
    return name


def check_fields(data: Mapping[str, Any], cls: type, prefix: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (nested dataclass fields too)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in names:
            raise _unknown_field(_first_leaf(f"{prefix}{key}", value), [f"{prefix}{n}" for n in names])
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            check_fields(value, hints[key], f"{prefix}{key}.")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_field(_first_leaf(f"{prefix}{key}", data[key]), [f"{prefix}{n}" for n in names])
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{key}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**kwargs)


STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"optim": {"lr": 2e-4, "betas": [0.5, 0.9], "weight_decay": 0.0, "warmup_steps": 200}},
    "1": {},
    "2": {"sfvr": {"enabled": True, "replace_prob": 1.0}},
    "3": {"optim": {"betas": [0.9, 0.999], "warmup_steps": 5000}},
    "generator": {"optim": {"lr": 2e-4, "betas": [0.9, 0.96], "weight_decay": 0.03}},
}


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in ("model", "generator"):
            out[key] = _merge(out[key], value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for text in overrides:
        _set(data, *parse_override(text), text)
    return data


def _set(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {part} is not a section")
    node[path[-1]] = value


def _assign(data: dict[str, Any], target: str, value: Any) -> None:
    """Set our dotted field ``target``; ``name[i]`` sets one entry of a list field (the rest kept)."""
    indexed = re.fullmatch(r"(.+)\[(\d+)\]", target)
    name = indexed.group(1) if indexed else target
    path = name.split(".")
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if indexed:
        current = node.get(path[-1], _lookup(TrainConfig(), name))
        value = [value if i == int(indexed.group(2)) else v for i, v in enumerate(current)]
    node[path[-1]] = value


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {path}: {err}") from err
    if not isinstance(doc, Mapping):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return dict(doc)


def _as_written(err: ConfigError, origins: Mapping[str, str]) -> ConfigError:
    """Report a field that came from an official key under that key (ours in brackets)."""
    parts = []
    for part in str(err).split("; "):
        name, sep, rest = part.partition(": ")
        official = origins.get(name) or origins.get(re.sub(r"\[\d+\]$", "", name))
        parts.append(f"{official} ({name} here): {rest}" if sep and official else part)
    return ConfigError("; ".join(parts))


def load_config(stage: str, path: str | Path | None = None, overrides: Sequence[str] = (), *,
                check_paths: bool = False, notes: list[str] | None = None) -> TrainConfig:
    """Defaults for ``stage`` <- YAML file (ours or official) <- overrides; validated.

    On top of an official YAML, official-layout overrides (``training.per_gpu_batch_size=32``) apply to
    the official document before it is translated; ours apply after. ``check_paths`` also checks that
    path fields exist. Translation notes (the official keys ignored) are appended to ``notes``.
    """
    if stage not in STAGES:
        raise ConfigError(f"stage: {stage!r} is not one of {list(STAGES)}")
    data: dict[str, Any] = _merge({"stage": stage}, copy.deepcopy(STAGE_DEFAULTS[stage]))
    parsed = [(*parse_override(text), text) for text in overrides]
    doc = _read_yaml(path) if path else {}
    origins: dict[str, str] = {}
    if is_official_layout(doc):
        official = [(keys, value) for keys, value, _ in parsed if is_official_path(keys)]
        parsed = [item for item in parsed if not is_official_path(item[0])]
        translation = translate_official(doc, stage, official)
        for target, value in translation.assignments:
            _assign(data, target, value)
        origins = dict(translation.origins)
        if notes is not None:
            notes.extend(translation.notes)
    else:
        if "stage" in doc and str(doc["stage"]) != stage:
            raise ConfigError(f"stage: the file says {doc['stage']!r} but --stage is {stage!r}")
        data = _merge(data, {k: v for k, v in doc.items() if k != "stage"})
    for keys, value, text in parsed:
        _set(data, keys, value, text)
        written = ".".join(keys)
        origins = {k: v for k, v in origins.items() if not (k == written or k.startswith((f"{written}.", f"{written}[")))}
    data["stage"] = str(data.get("stage", stage))
    try:
        cfg = _build(TrainConfig, data).validate()
        return cfg.check_paths() if check_paths else cfg
    except ConfigError as err:
        raise _as_written(err, origins) from err
