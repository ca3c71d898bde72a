"""Model configuration as data: frozen dataclasses, validated on construction.

Two outside layouts are accepted at the edge and converted once: the official OmegaConf/YAML layout
(``model.vq_model.*``, ``model.decoder.*``, ``dataset.preprocessing.crop_size``) and our own flat
``config.json`` written by :func:`core.checkpoint.save_pretrained`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {message}")


@dataclass(frozen=True)
class VitConfig:
    """Width W, depth and heads of a pre-norm ViT stack (MLP hidden = mlp_ratio * W)."""

    width: int
    depth: int
    heads: int
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "mlp_ratio"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, f"must be a positive integer, got {value!r}")
        _require(self.width % self.heads == 0, "heads", f"width {self.width} is not divisible by heads {self.heads}")


VIT_SIZES: dict[str, VitConfig] = {
    "tiny": VitConfig(width=128, depth=4, heads=4),
    "small": VitConfig(width=512, depth=8, heads=8),
    "base": VitConfig(width=768, depth=12, heads=12),
    "large": VitConfig(width=1024, depth=24, heads=16),
}


def vit_size(name: str, field_name: str = "vit size") -> VitConfig:
    _require(name in VIT_SIZES, field_name, f"unknown size {name!r}; allowed: {sorted(VIT_SIZES)}")
    return VIT_SIZES[name]


@dataclass(frozen=True)
class TeacherConfig:
    """MaskGIT-VQGAN shape. Defaults are the official ImageNet f16 teacher (1024 codes of dim 256)."""

    hidden_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    num_groups: int = 32
    commitment_cost: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(c) for c in self.channel_mult))
        for name in ("hidden_channels", "num_res_blocks", "z_channels", "num_groups"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, f"teacher.{name}", f"must be a positive integer, got {value!r}")
        _require(len(self.channel_mult) >= 1 and all(c > 0 for c in self.channel_mult),
                 "teacher.channel_mult", "must be a non-empty list of positive integers")
        _require(isinstance(self.codebook_size, int) and self.codebook_size >= 2,
                 "teacher.codebook_size", f"must be an integer >= 2, got {self.codebook_size!r}")
        for c in {self.hidden_channels * m for m in (1, *self.channel_mult)}:
            _require(c % self.num_groups == 0, "teacher.num_groups",
                     f"{self.num_groups} groups do not divide a {c}-channel layer")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


QUANTIZER_MODES = ("sinkhorn", "nearest")
WEIGHT_INITS = ("official", "pytorch")  # how a new model's encoder/decoder weights start (core.sftok.official_init)


@dataclass(frozen=True)
class SFTokConfig:
    """Everything needed to build an SFTok model (encoder, OptVQ, multi-step decoder, pixel head).

    The proxy-code grid is derived from the teacher: ``image_size / teacher.downsample_factor``
    squared slots, vocabulary ``teacher.codebook_size`` plus one mask id (= ``teacher.codebook_size``).
    """

    image_size: int = 256
    patch_size: int = 16
    encoder: VitConfig = VIT_SIZES["base"]
    decoder: VitConfig = VIT_SIZES["base"]
    num_latent_tokens: int = 64
    token_size: int = 32
    codebook_size: int = 8192
    commitment_cost: float = 0.25
    quantizer_mode: str = "sinkhorn"
    weight_init: str = "official"  # "pytorch": torch's default layer init (what the embedded default was trained from)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    has_pixel_head: bool = True
    # Decode defaults (the official yaml files lack model.generator; see reference section 3.1).
    num_steps: int = 8
    randomize_temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "num_latent_tokens", "token_size", "num_steps"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, f"must be a positive integer, got {value!r}")
        _require(self.image_size % self.patch_size == 0, "patch_size",
                 f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        _require(self.image_size % self.teacher.downsample_factor == 0, "image_size",
                 f"{self.image_size} is not divisible by the teacher's downsampling factor {self.teacher.downsample_factor}")
        _require(isinstance(self.codebook_size, int) and self.codebook_size >= 2, "codebook_size",
                 f"must be an integer >= 2, got {self.codebook_size!r}")
        _require(self.quantizer_mode in QUANTIZER_MODES, "quantizer_mode",
                 f"{self.quantizer_mode!r} is not one of {QUANTIZER_MODES}")
        _require(self.weight_init in WEIGHT_INITS, "weight_init", f"{self.weight_init!r} is not one of {WEIGHT_INITS}")
        _require(1 <= self.num_steps <= 32, "num_steps", f"must be in 1..32, got {self.num_steps}")
        _require(self.randomize_temperature >= 0, "randomize_temperature", "must be >= 0")
        _require(self.commitment_cost >= 0, "commitment_cost", "must be >= 0")

    # Derived sizes -------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Side of the proxy-code grid (16 for the official 256 px / f16 teacher)."""
        return self.image_size // self.teacher.downsample_factor

    @property
    def num_proxy_codes(self) -> int:
        return self.grid_size ** 2

    @property
    def proxy_vocab_size(self) -> int:
        return self.teacher.codebook_size

    @property
    def mask_id(self) -> int:
        return self.teacher.codebook_size

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    # Serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SFTokConfig":
        """Build from our flat layout; unknown fields are rejected by name."""
        return from_flat_dict(cls, data, "config")

    def replace(self, **changes: Any) -> "SFTokConfig":
        return dataclasses.replace(self, **changes)


def _get(node: Any, path: str, default: Any = None) -> Any:
    """Read a dotted path from dicts or OmegaConf nodes without OmegaConf's missing-key errors."""
    for part in path.split("."):
        if node is None:
            return default
        try:
            node = node[part] if part in node else None
        except TypeError:
            return default
    return default if node is None else node


def is_official_layout(data: Mapping[str, Any]) -> bool:
    return "model" in data and _get(data, "model.vq_model") is not None


def from_official(cfg: Any) -> SFTokConfig:
    """Convert the official YAML/OmegaConf layout (or an HF ``config.json`` holding it)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    vq = _get(cfg, "model.vq_model", {})
    dec = _get(cfg, "model.decoder", {})
    gen = _get(cfg, "model.generator", {}) or {}
    crop = int(_get(cfg, "dataset.preprocessing.crop_size", 256))
    dec_size = _get(dec, "vit_dec_model_size", None) or _get(vq, "vit_dec_model_size", "base")
    return SFTokConfig(
        image_size=crop,
        patch_size=int(_get(vq, "vit_enc_patch_size", 16)),
        encoder=vit_size(_get(vq, "vit_enc_model_size", "base"), "model.vq_model.vit_enc_model_size"),
        decoder=vit_size(dec_size, "model.decoder.vit_dec_model_size"),
        num_latent_tokens=int(_get(vq, "num_latent_tokens", 64)),
        token_size=int(_get(vq, "token_size", 32)),
        codebook_size=int(_get(vq, "codebook_size", 8192)),
        commitment_cost=float(_get(vq, "commitment_cost", 0.25)),
        teacher=TeacherConfig(codebook_size=int(_get(dec, "codebook_size", 1024))),
        has_pixel_head=bool(_get(vq, "finetune_decoder", False)),
        num_steps=int(gen.get("num_steps", 8)),
        randomize_temperature=float(gen.get("randomize_temperature", 1.0)),
    )


def resolve_config(cfg: Any) -> SFTokConfig:
    """Accept an :class:`SFTokConfig`, our flat dict, or the official layout (dict/OmegaConf)."""
    if isinstance(cfg, SFTokConfig):
        return cfg
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config: expected a mapping or SFTokConfig, got {type(cfg).__name__}")
    if is_official_layout(cfg):
        return from_official(cfg)
    return SFTokConfig.from_dict(cfg)


ConfigT = TypeVar("ConfigT")


def from_flat_dict(cls: type[ConfigT], data: Mapping[str, Any], what: str) -> ConfigT:
    """A tokenizer config (SFTok, TiTok) from our flat layout: ViT sizes by name or as dicts, the teacher as a
    dict; unknown fields are refused by name, and ``what`` names the config in every error."""
    data = dict(data)
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - allowed)
    _require(not unknown, what, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    for name in ("encoder", "decoder"):
        if isinstance(data.get(name), str):
            data[name] = vit_size(data[name], name)
        elif isinstance(data.get(name), Mapping):
            data[name] = VitConfig(**data[name])
    if isinstance(data.get("teacher"), Mapping):
        data["teacher"] = TeacherConfig(**data["teacher"])
    try:
        return cls(**data)
    except TypeError as err:  # wrong types inside nested configs
        raise ConfigError(f"{what}: {err}") from err
