"""TiTok (bytedance/1d-tokenizer): the one-step 1-D tokenizer SFTok improves on, in the release's key layout.

Encoder (shared with SFTok: ``core.encoder``) -> L2-normalised nearest-neighbour VQ (4096 codes of 12 dims)
-> a single-pass decoder that predicts MaskGIT-VQGAN proxy-code logits for all 256 slots at once (every
slot is the one learned ``mask_token``) -> the fine-tuned pixel head inside the TiTok file, fed the
*softmax mixture* of codewords (not the argmax). Kept as the release has them because its weights depend
on them: the legacy raw reshape before the encoder's 1x1 conv, and ``pixel_*`` weights trained in stage 2.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import VIT_SIZES, WEIGHT_INITS, ConfigError, TeacherConfig, VitConfig, from_flat_dict, vit_size
from .encoder import TiTokEncoder
from .inputs import check_images, check_token_ids
from .kernels import linear
from .maskgit_vqgan import MaskGITVQGAN, VectorQuantizer, VQGANDecoder
from .sftok import official_init
from .vit import build_transformer


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


@dataclass(frozen=True)
class TiTokConfig:
    """TiTok's shape. Defaults are TiTok-B-64 (``configs/infer/TiTok/titok_b64.yaml``).

    The proxy-code grid is the patch grid (image_size / patch_size per side), so the pixel head's
    downsampling factor must equal the patch size (16 and 16 in the release).
    """

    image_size: int = 256
    patch_size: int = 16
    encoder: VitConfig = VIT_SIZES["base"]
    decoder: VitConfig = VIT_SIZES["base"]
    num_latent_tokens: int = 64
    token_size: int = 12
    codebook_size: int = 4096
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    has_pixel_head: bool = True  # official ``finetune_decoder``: stage-2 files carry pixel_quantize/pixel_decoder
    # how a new model's encoder/decoder weights start, as SFTokConfig.weight_init: a TiTok trained beside an SFTok
    # recipe takes that recipe's init, so the two differ only in architecture (no effect on loaded weights)
    weight_init: str = "official"

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "num_latent_tokens", "token_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, f"titok.{name}", f"must be a positive integer, got {value!r}")
        _require(isinstance(self.codebook_size, int) and self.codebook_size >= 2, "titok.codebook_size",
                 f"must be an integer >= 2, got {self.codebook_size!r}")
        _require(self.weight_init in WEIGHT_INITS, "titok.weight_init",
                 f"{self.weight_init!r} is not one of {WEIGHT_INITS}")
        _require(self.image_size % self.patch_size == 0, "titok.patch_size",
                 f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        _require(self.patch_size == self.teacher.downsample_factor, "titok.patch_size",
                 f"the proxy grid is the patch grid: patch_size {self.patch_size} must equal the pixel head's "
                 f"downsampling factor {self.teacher.downsample_factor}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_proxy_codes(self) -> int:
        return self.grid_size ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TiTokConfig":
        """Our flat layout (``save_pretrained``); unknown fields are refused by name."""
        return from_flat_dict(cls, data, "titok config")


TITOK_PRESETS: dict[str, TiTokConfig] = {
    "titok_b64": TiTokConfig(),
    "titok_l32": TiTokConfig(encoder=VIT_SIZES["large"], decoder=VIT_SIZES["large"], num_latent_tokens=32),
}
# The released files and which preset each one is.
RELEASE_FILES = {"tokenizer_titok_b64.bin": "titok_b64", "tokenizer_titok_l32.bin": "titok_l32",
                 "yucornetto/tokenizer_titok_b64_imagenet": "titok_b64",
                 "yucornetto/tokenizer_titok_l32_imagenet": "titok_l32"}


def _select(cfg: Any, path: str, default: Any) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = OmegaConf.select(cfg, path, default=default)
    except OmegaConfBaseException as err:  # an interpolation pointing nowhere
        raise ConfigError(f"{path}: cannot be resolved ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return default if value is None else value


def titok_from_official(data: Mapping[str, Any]) -> TiTokConfig:
    """The official layout (the hub ``config.json``, an infer yaml): ``model.vq_model.*`` and the crop size.

    Values the release does not use are refused with the reason; absent switches take the official
    defaults (``finetune_decoder`` True, ``quantize_mode`` "vq", ``is_legacy`` True). Interpolations
    such as ``${model.vq_model.num_latent_tokens}`` are resolved where read.
    """
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(dict(data))
    vq = "model.vq_model."
    mode = _select(cfg, vq + "quantize_mode", "vq")
    _require(mode == "vq", vq + "quantize_mode", f"only 'vq' TiTok is implemented (the VAE variants have no ids), got {mode!r}")
    _require(bool(_select(cfg, vq + "is_legacy", True)), vq + "is_legacy",
             "only the legacy TiTok (B-64, L-32, S-128: proxy-code head) is implemented; non-legacy variants decode pixels directly")
    _require(bool(_select(cfg, vq + "use_l2_norm", True)), vq + "use_l2_norm", "the released TiTok normalises codes; False is not implemented")
    enc_patch = int(_select(cfg, vq + "vit_enc_patch_size", 16))
    dec_patch = int(_select(cfg, vq + "vit_dec_patch_size", enc_patch))
    _require(enc_patch == dec_patch, vq + "vit_dec_patch_size", f"must equal vit_enc_patch_size {enc_patch}, got {dec_patch}")
    return TiTokConfig(
        image_size=int(_select(cfg, "dataset.preprocessing.crop_size", 256)),
        patch_size=enc_patch,
        encoder=vit_size(str(_select(cfg, vq + "vit_enc_model_size", "base")), vq + "vit_enc_model_size"),
        decoder=vit_size(str(_select(cfg, vq + "vit_dec_model_size", "base")), vq + "vit_dec_model_size"),
        num_latent_tokens=int(_select(cfg, vq + "num_latent_tokens", 64)),
        token_size=int(_select(cfg, vq + "token_size", 12)),
        codebook_size=int(_select(cfg, vq + "codebook_size", 4096)),
        has_pixel_head=bool(_select(cfg, vq + "finetune_decoder", True)),
    )


def resolve_titok_config(cfg: Any) -> TiTokConfig:
    """A TiTokConfig, a preset name (``titok_b64``, ``titok_l32``), our flat dict or the official layout."""
    if isinstance(cfg, TiTokConfig):
        return cfg
    if isinstance(cfg, str):
        _require(cfg in TITOK_PRESETS, "titok preset", f"unknown preset {cfg!r}; allowed: {sorted(TITOK_PRESETS)}")
        return TITOK_PRESETS[cfg]
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"titok config: expected a mapping, preset name or TiTokConfig, got {type(cfg).__name__}")
    if "model" in cfg:
        return titok_from_official(cfg)
    return TiTokConfig.from_dict(cfg)


def is_titok_weights(state: Mapping[str, torch.Tensor]) -> bool:
    """TiTok's key signature: top-level ``latent_tokens``, a one-pass decoder with a single ``mask_token``
    (SFTok's decoder has a code table instead) and a plain ``quantize.embedding``."""
    return {"latent_tokens", "decoder.mask_token", "quantize.embedding.weight",
            "decoder.latent_token_positional_embedding"} <= set(state)


def titok_preset_for(state: Mapping[str, torch.Tensor]) -> str:
    """Which released TiTok a bare state dict is, read off ``latent_tokens`` (N, W); the strict load then
    checks every other key and shape against that preset."""
    shape = tuple(state["latent_tokens"].shape)
    for name, cfg in TITOK_PRESETS.items():
        if shape == (cfg.num_latent_tokens, cfg.encoder.width):
            return name
    known = ", ".join(f"{n} {(c.num_latent_tokens, c.encoder.width)}" for n, c in TITOK_PRESETS.items())
    raise ConfigError(f"latent_tokens: shape {shape} is none of the released TiTok models ({known}); "
                      "pass a config for other shapes")


class NormalizedVQ(nn.Module):
    """TiTok's quantiser: nearest code by distance between L2-normalised vectors (= largest cosine).

    Distances use the official expansion |z|^2 + |e|^2 - 2 z.e on unit vectors, in fp32, so near-ties
    break as the release does; the first index wins a tie.
    """

    def __init__(self, codebook_size: int, token_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, token_size)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codes(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight.float(), dim=-1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, C, 1, N) -> (straight-through z_q (B, C, 1, N) of unit codewords, ids (B, 1, N))."""
        b, c, h, n = z.shape
        flat = F.normalize(z.float().permute(0, 2, 3, 1).reshape(-1, c), dim=-1)
        codes = self.codes()
        with torch.no_grad():
            dist = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * (flat @ codes.t())
            ids = dist.argmin(dim=1)
        chosen = codes[ids]
        z_q = flat + (chosen - flat).detach()
        return z_q.view(b, h, n, c).permute(0, 3, 1, 2), ids.view(b, h, n)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, N) -> unit codewords as z_q (B, C, 1, N)."""
        return self.codes()[ids].transpose(1, 2).unsqueeze(2)


class OneStepDecoder(nn.Module):
    """[cls, S mask slots, N latent tokens] -> proxy-code logits (B, S, V) in one pass.

    Every slot starts as the same learned ``mask_token``; only the slot positions tell them apart.
    The head is TiTok's 1x1 convs (W -> 2W, tanh, -> V) applied as matmuls per slot.
    """

    def __init__(self, cfg: TiTokConfig) -> None:
        super().__init__()
        width = cfg.decoder.width
        scale = width ** -0.5
        self.num_slots = cfg.num_proxy_codes
        self.decoder_embed = nn.Linear(cfg.token_size, width)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.num_slots + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(cfg.num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_transformer(cfg.decoder)
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Tanh(), nn.Conv2d(2 * width, cfg.teacher.codebook_size, 1))

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, C, 1, N) -> logits (B, S, V), slots in raster order."""
        b = z_q.shape[0]
        cond = self.decoder_embed(z_q.flatten(1, 2).transpose(1, 2)) + self.latent_token_positional_embedding
        slots = self.mask_token[0].expand(self.num_slots, -1)
        queries = torch.cat([self.class_embedding, slots]) + self.positional_embedding  # same for every image
        x = self.ln_pre(torch.cat([queries.to(cond.dtype).expand(b, -1, -1), cond], dim=1))
        for block in self.transformer[:-1]:
            x = block(x)
        hidden = self.ln_post(self.transformer[-1](x, rows=slice(1, 1 + self.num_slots)))
        fc1, fc2 = self.ffn[0], self.ffn[2]
        return linear(linear(hidden, fc1.weight.flatten(1), fc1.bias, "tanh"), fc2.weight.flatten(1), fc2.bias)


class TiTok(nn.Module):
    """TiTok with the release's state-dict keys (``latent_tokens``, ``encoder.``, ``decoder.``, ``quantize.``,
    ``pixel_quantize.``, ``pixel_decoder.``). Official call shapes: ``encode`` -> (z_q, {"min_encoding_indices":
    (B, 1, N)}), ``decode(z_q)`` and ``decode_tokens(ids)`` -> images; ours are clamped to [0, 1]."""

    def __init__(self, config: Any = "titok_b64") -> None:
        super().__init__()
        cfg = resolve_titok_config(config)
        self.config = cfg
        self.latent_tokens = nn.Parameter(cfg.encoder.width ** -0.5 * torch.randn(cfg.num_latent_tokens, cfg.encoder.width))
        self.encoder = TiTokEncoder(cfg)
        self.decoder = OneStepDecoder(cfg)
        if cfg.weight_init == "official":
            self.encoder.apply(official_init)
            self.decoder.apply(official_init)
        self.quantize = NormalizedVQ(cfg.codebook_size, cfg.token_size)
        if cfg.has_pixel_head:
            self.pixel_quantize = VectorQuantizer(cfg.teacher.codebook_size, cfg.teacher.z_channels)
            self.pixel_decoder = VQGANDecoder(cfg.teacher)
        self._teacher: MaskGITVQGAN | None = None

    @property
    def has_pixel_head(self) -> bool:
        return self.config.has_pixel_head

    def attach_teacher(self, teacher: MaskGITVQGAN | None) -> None:
        """A stage-1 file (no pixel head) renders the argmax codes through the frozen teacher, as the
        official stage-1 evaluation does. Not part of the state dict."""
        object.__setattr__(self, "_teacher", teacher)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images (B, 3, H, W) in [0, 1] -> (z_q (B, C, 1, N), {"min_encoding_indices": (B, 1, N) int64}).
        z_q is straight-through (gradients reach the encoder); the adapters call this under no_grad."""
        check_images(images, self.config.image_size)
        z = self.encoder(images.to(self.latent_tokens.dtype), self.latent_tokens)
        z_q, ids = self.quantize(z)
        return z_q, {"min_encoding_indices": ids}

    def proxy_logits(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, S, V) logits over the MaskGIT-VQGAN codes for each of the S proxy slots."""
        return self.decoder(z_q.to(self.latent_tokens.dtype)).float()

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, C, 1, N) -> images (B, 3, H, W) clamped to [0, 1].

        With the pixel head: the softmax over codes mixes the codewords (soft decoding, the release's
        path). Without it: argmax codes through the attached teacher."""
        logits = self.proxy_logits(z_q)
        if self.has_pixel_head:
            latent = self.pixel_quantize.soft_entry(torch.softmax(logits, dim=-1))
            return self.pixel_decoder(latent).clamp(0.0, 1.0)
        if self._teacher is None:
            raise RuntimeError("this TiTok file has no pixel head (stage 1): call attach_teacher(teacher) to render pixels")
        return self._teacher.decode_codes(logits.argmax(dim=-1))

    @torch.no_grad()
    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, 1, N) or (B, N) -> images (B, 3, H, W) in [0, 1], in one step."""
        ids = check_token_ids(ids, self.config.num_latent_tokens, self.config.codebook_size)
        return self.decode(self.quantize.lookup(ids.to(self.latent_tokens.device)))
