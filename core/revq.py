"""ReVQ (Neur-IO/ReVQ, "quantize-then-rectify"): a VQ-VAE made from a frozen DC-AE, in the release's key layout.

Image -> DC-AE latent (32, 8, 8) -> per-element standardisation (``preprocessor.pth``) -> T tokens of D
consecutive values of the row-major (c, h, w) flattening -> each token position has its *own* codebook
(K codes) -> nearest code by Euclidean distance -> the rectifier (a one-stage DC-AE-style decoder of
EfficientViT blocks, latent -> latent) -> de-standardisation -> DC-AE decoder. A token id only means
something together with its position. The DC-AE is not re-implemented: it is a diffusers ``AutoencoderDC``
loaded from a local folder, or any module injected with the same ``encode(x).latent`` / ``decode(z).sample``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError
from .inputs import InputError, check_images, check_token_ids


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


@dataclass(frozen=True)
class ReVQConfig:
    """Shape of one ReVQ model. Defaults are ``512T_NC=16384.yaml``."""

    latent_shape: tuple[int, int, int] = (32, 8, 8)  # DC-AE f32c32 latent of a 256 px image
    tokens: int = 512  # tokens_per_data = num_group: one codebook per token position
    num_code: int = 16384  # codes per position
    rectifier_width: int = 512
    rectifier_layers: int = 3
    attention_head_dim: int = 32
    multiscale_kernel: int = 5
    image_size: int = 256  # DC-AE spatial compression 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_shape", tuple(int(v) for v in self.latent_shape))
        _require(len(self.latent_shape) == 3 and all(v > 0 for v in self.latent_shape), "revq.latent_shape",
                 f"must be (channels, height, width), got {self.latent_shape}")
        for name in ("tokens", "num_code", "rectifier_width", "rectifier_layers", "attention_head_dim",
                     "multiscale_kernel", "image_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, f"revq.{name}", f"must be a positive integer, got {value!r}")
        _require(self.latent_numel % self.tokens == 0, "revq.tokens",
                 f"{self.tokens} tokens do not split a {self.latent_numel}-value latent evenly")
        channels = self.latent_shape[0]
        _require(self.rectifier_width % channels == 0, "revq.rectifier_width",
                 f"must be a multiple of the {channels} latent channels (input shortcut), got {self.rectifier_width}")
        _require(self.rectifier_width % self.attention_head_dim == 0, "revq.rectifier_width",
                 f"must be a multiple of attention_head_dim {self.attention_head_dim}, got {self.rectifier_width}")
        _require(self.multiscale_kernel % 2 == 1, "revq.multiscale_kernel", f"must be odd, got {self.multiscale_kernel}")

    @property
    def latent_numel(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def code_dim(self) -> int:
        """D: values per token (4 for 512 tokens, 8 for 256)."""
        return self.latent_numel // self.tokens

    @property
    def heads(self) -> int:
        return self.rectifier_width // self.attention_head_dim


REVQ_PRESETS: dict[str, ReVQConfig] = {
    "512T_NC=16384": ReVQConfig(),
    "256T_NC=65536": ReVQConfig(tokens=256, num_code=65536, rectifier_width=1024, rectifier_layers=4),
    "256T_NC=262144": ReVQConfig(tokens=256, num_code=262144, rectifier_width=512, rectifier_layers=4),
}


def _expect(section: Mapping[str, Any], key: str, allowed: Any, where: str) -> None:
    if key in section:
        value = section[key]
        _require(value == allowed, f"{where}.{key}", f"only {allowed!r} (every released config) is implemented, got {value!r}")


def revq_from_yaml(data: Mapping[str, Any]) -> ReVQConfig:
    """The official YAML (``configs/512T_NC=16384.yaml`` etc.): ``model.input_data_size``,
    ``model.quantizer`` and ``model.decoder``. Anything the released configs do not use is refused by name."""
    model = data.get("model", data)
    _require(isinstance(model, Mapping), "model", "expected a mapping")
    quant, dec = model.get("quantizer"), model.get("decoder")
    _require(isinstance(quant, Mapping), "model.quantizer", "missing")
    _require(isinstance(dec, Mapping), "model.decoder", "missing")
    _expect(quant, "TYPE", "vq", "model.quantizer")
    _expect(dec, "TYPE", "dc_ae", "model.decoder")
    shape = tuple(model.get("input_data_size", (32, 8, 8)))
    tokens = int(quant.get("tokens_per_data", 0) or 0)
    _require(tokens > 0, "model.quantizer.tokens_per_data", "missing")
    groups = int(quant.get("num_group", tokens))
    _require(groups == tokens, "model.quantizer.num_group",
             f"only one codebook per token position (num_group = tokens_per_data = {tokens}) is implemented, got {groups}")
    if "code_dim" in quant:
        _require(int(quant["code_dim"]) * tokens == math.prod(shape), "model.quantizer.code_dim",
                 f"{quant['code_dim']} x {tokens} tokens != {math.prod(shape)} latent values")
    for key, allowed in (("block_type", ["EfficientViTBlock"]), ("norm_type", "rms_norm"), ("in_shortcut", True)):
        _expect(dec, key, allowed, "model.decoder")
    widths, layers = list(dec.get("block_out_channels", [])), list(dec.get("layers_per_block", []))
    _require(len(widths) == 1 and len(layers) == 1, "model.decoder.block_out_channels",
             f"only a one-stage rectifier (no up/down-sampling) is implemented, got {widths} / {layers}")
    scales = dec.get("qkv_multiscales", [[5]])
    _require(len(scales) == 1 and len(scales[0]) == 1, "model.decoder.qkv_multiscales",
             f"exactly one multi-scale kernel is implemented, got {scales}")
    for key in ("in_channels", "latent_channels"):
        _require(int(dec.get(key, shape[0])) == shape[0], f"model.decoder.{key}",
                 f"must equal the latent's {shape[0]} channels, got {dec.get(key)}")
    return ReVQConfig(latent_shape=shape, tokens=tokens, num_code=int(quant["num_code"]), rectifier_width=int(widths[0]),
                      rectifier_layers=int(layers[0]), attention_head_dim=int(dec.get("attention_head_dim", 32)),
                      multiscale_kernel=int(scales[0][0]))


# -- quantiser ----------------------------------------------------------------------------------------
class PositionalCodebooks(nn.Module):
    """One codebook of K D-dim codes per token position (keys ``embeddings``, ``index_offset``, ``count``).

    Nearest code by ``torch.cdist`` (Euclidean, first minimum on ties), as the release. ``count`` (usage
    counts) is kept for strict loading but, unlike the release, inference does not update it.
    """

    def __init__(self, tokens: int, num_code: int, code_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.randn(tokens, num_code, code_dim))
        self.register_buffer("index_offset", torch.arange(tokens, dtype=torch.long) * num_code)
        self.register_buffer("count", torch.zeros(tokens, num_code))

    @torch.no_grad()
    def indices(self, tokens: torch.Tensor, max_bytes: int = 1 << 28) -> torch.Tensor:
        """tokens (B, T, D) -> local ids (B, T) int64; positions in chunks so the distance table stays small."""
        b, t, _ = tokens.shape
        per_position = b * self.embeddings.shape[1] * 4
        step = max(1, max_bytes // per_position)
        by_position = tokens.float().transpose(0, 1)  # (T, B, D)
        ids = [torch.cdist(by_position[i:i + step], self.embeddings[i:i + step].float()).argmin(dim=2)
               for i in range(0, t, step)]
        return torch.cat(ids).transpose(0, 1).contiguous()

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Local ids (B, T) -> codes (B, T, D): position t reads its own codebook."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.embeddings[positions, ids]


# -- rectifier ----------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """diffusers' RMSNorm with weight and bias, over the last axis, statistics in fp32, eps 1e-5."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * scale).to(self.weight.dtype) * self.weight + self.bias


def channel_norm(norm: RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm over the channels of (B, C, H, W)."""
    return norm(x.movedim(1, -1)).movedim(-1, 1)


class MultiscaleProjection(nn.Module):
    def __init__(self, channels: int, groups: int, kernel: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.proj_in(x))


class MultiscaleLinearAttention(nn.Module):
    """ReLU-kernel linear attention over [qkv, multiscale(qkv)] (diffusers' Sana multiscale attention, residual).

    The 6C channels are cut into 2*heads groups of 3*d *consecutive* channels, each group's first d acting
    as query, next d as key, last d as value: the roles do not follow the names ``to_q``/``to_k``/``to_v``,
    and the release's weights depend on this regrouping.
    """

    def __init__(self, channels: int, head_dim: int, kernel: int, eps: float = 1e-15) -> None:
        super().__init__()
        self.head_dim, self.eps = head_dim, eps
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_qkv_multiscale = nn.ModuleList([MultiscaleProjection(3 * channels, 3 * (channels // head_dim), kernel)])
        self.to_out = nn.Linear(2 * channels, channels, bias=False)
        self.norm_out = RMSNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        last = x.movedim(1, -1)
        qkv = torch.cat([self.to_q(last), self.to_k(last), self.to_v(last)], dim=-1).movedim(-1, 1)
        both = torch.cat([qkv, self.to_qkv_multiscale[0](qkv)], dim=1).float()
        groups = both.view(b, -1, 3, self.head_dim, h * w)  # (B, G, role, d, N)
        q, k, v = F.relu(groups[:, :, 0]), F.relu(groups[:, :, 1]), groups[:, :, 2]
        kv = torch.einsum("bgen,bgdn->bgde", k, v)  # sum over positions first: linear in N
        numerator = torch.einsum("bgde,bgen->bgdn", kv, q)
        denominator = torch.einsum("bge,bgen->bgn", k.sum(-1), q).unsqueeze(2)
        out = (numerator / (denominator + self.eps)).to(x.dtype).reshape(b, -1, h, w)
        out = self.to_out(out.movedim(1, -1))
        return self.norm_out(out).movedim(-1, 1) + x


class GatedConvMLP(nn.Module):
    """GLUMBConv: 1x1 expand x8 -> SiLU -> depthwise 3x3 -> x * SiLU(gate) -> 1x1 -> RMSNorm, residual."""

    def __init__(self, channels: int, expand: int = 4) -> None:
        super().__init__()
        hidden = expand * channels
        self.conv_inverted = nn.Conv2d(channels, 2 * hidden, 1)
        self.conv_depth = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.conv_point = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm = RMSNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.conv_depth(F.silu(self.conv_inverted(x))).chunk(2, dim=1)
        return channel_norm(self.norm, self.conv_point(value * F.silu(gate))) + x


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int, kernel: int) -> None:
        super().__init__()
        self.attn = MultiscaleLinearAttention(channels, head_dim, kernel)
        self.conv_out = GatedConvMLP(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.attn(x))


class Rectifier(nn.Module):
    """Latent -> latent (same shape): conv_in + channel-repeat shortcut, L EfficientViT blocks, RMSNorm,
    ReLU, conv_out. Keys as ReVQ's ``DCAEDecoder`` (``ckpt.pth["decoder"]``)."""

    def __init__(self, cfg: ReVQConfig) -> None:
        super().__init__()
        channels, width = cfg.latent_shape[0], cfg.rectifier_width
        self.repeats = width // channels
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        blocks = [EfficientViTBlock(width, cfg.attention_head_dim, cfg.multiscale_kernel) for _ in range(cfg.rectifier_layers)]
        self.up_blocks = nn.ModuleList([nn.Sequential(*blocks)])
        self.norm_out = RMSNorm(width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x) + x.repeat_interleave(self.repeats, dim=1)
        h = self.up_blocks[0](h)
        return self.conv_out(F.relu(channel_norm(self.norm_out, h))).contiguous()


# -- standardisation and the model --------------------------------------------------------------------
class LatentStandardiser(nn.Module):
    """``preprocessor.pth``: a mean and a std for every one of the latent's values (not per channel)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(numel))
        self.register_buffer("std", torch.ones(numel))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return ((latent.reshape(latent.shape[0], -1) - self.mean) / self.std).view(latent.shape)

    def inverse(self, standardised: torch.Tensor) -> torch.Tensor:
        return (standardised.reshape(standardised.shape[0], -1) * self.std + self.mean).view(standardised.shape)


def _output(value: Any, field: str) -> torch.Tensor:
    """A diffusers output object (``.latent`` / ``.sample``) or a plain tensor."""
    return getattr(value, field, value)


class ReVQ(nn.Module):
    """State dict: ``preprocessor.{mean,std}``, ``quantizer.*``, ``decoder.*`` (the rectifier, as in
    ``ckpt.pth``). The DC-AE is attached (``attach_autoencoder``), not part of it.

    Latent-level calls work without a DC-AE: ``latent_to_ids``, ``quantized_latent``, ``ids_to_latent``.
    ``encode`` / ``decode_tokens`` (images in [0, 1]) need one.
    """

    def __init__(self, config: ReVQConfig | str = "512T_NC=16384") -> None:
        super().__init__()
        if isinstance(config, str):
            _require(config in REVQ_PRESETS, "revq preset", f"unknown preset {config!r}; allowed: {sorted(REVQ_PRESETS)}")
            config = REVQ_PRESETS[config]
        self.config = config
        self.preprocessor = LatentStandardiser(config.latent_numel)
        self.quantizer = PositionalCodebooks(config.tokens, config.num_code, config.code_dim)
        self.decoder = Rectifier(config)
        self._autoencoder: nn.Module | None = None

    def attach_autoencoder(self, autoencoder: nn.Module | None) -> None:
        """The frozen DC-AE (diffusers ``AutoencoderDC`` or a module with its encode/decode)."""
        object.__setattr__(self, "_autoencoder", None if autoencoder is None else autoencoder.eval())

    @property
    def autoencoder(self) -> nn.Module:
        if self._autoencoder is None:
            raise RuntimeError("ReVQ needs its DC-AE to turn images into latents and back: download "
                               "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers into a folder and pass it "
                               "(core.revq.load_dcae(folder), which needs the diffusers package)")
        return self._autoencoder

    def _tokens(self, standardised: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, T, D): D consecutive values of the row-major flattening (a run along a row)."""
        return standardised.contiguous().view(standardised.shape[0], self.config.tokens, self.config.code_dim)

    def _latent(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.reshape(tokens.shape[0], *self.config.latent_shape)

    def _check_latent(self, latent: torch.Tensor) -> None:
        if not isinstance(latent, torch.Tensor) or latent.dim() != 4 or tuple(latent.shape[1:]) != self.config.latent_shape:
            raise InputError(f"latent: expected shape (B, {', '.join(map(str, self.config.latent_shape))}), "
                             f"got {tuple(getattr(latent, 'shape', ()))}")

    @torch.no_grad()
    def latent_to_ids(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw DC-AE latent (B, 32, 8, 8) -> ids (B, T), each local to its position's codebook."""
        self._check_latent(latent)
        return self.quantizer.indices(self._tokens(self.preprocessor(latent.float())))

    @torch.no_grad()
    def quantized_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Each token replaced by its nearest code, still standardised (what the rectifier reads)."""
        return self._latent(self.quantizer.lookup(self.latent_to_ids(latent)))

    @torch.no_grad()
    def rectify(self, quantized: torch.Tensor) -> torch.Tensor:
        """Standardised quantised latent -> raw DC-AE latent (rectifier, then de-standardisation)."""
        return self.preprocessor.inverse(self.decoder(quantized))

    @torch.no_grad()
    def ids_to_latent(self, ids: torch.Tensor) -> torch.Tensor:
        ids = check_token_ids(ids, self.config.tokens, self.config.num_code).to(self.quantizer.embeddings.device)
        return self.rectify(self._latent(self.quantizer.lookup(ids)))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 256, 256) in [0, 1] -> ids (B, T); the DC-AE reads [-1, 1]."""
        check_images(images, self.config.image_size)
        return self.latent_to_ids(_output(self.autoencoder.encode(images * 2 - 1), "latent"))

    @torch.no_grad()
    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, T) -> images in [0, 1] (clamped), in one step."""
        autoencoder = self.autoencoder
        latent = self.ids_to_latent(ids)
        return ((_output(autoencoder.decode(latent), "sample").float() + 1) / 2).clamp(0.0, 1.0)
