"""The official stage-3 discriminator: trainable heads on a frozen DINO ViT-S/16 (reference section 4.6).

A frozen self-supervised ViT gives the discriminator semantic features from the first step, so
only small heads (spectral-normalised 1-D convs over the 196 patch tokens) are trained. The
backbone is kept outside the module tree (a tuple attribute): the optimiser, ``requires_grad_``,
``state_dict`` and checkpoints only ever see the heads, yet the generator's gradient still flows
through the backbone to the fake image.

The backbone weights come only from a local ``dino_deitsmall16_pretrain.pth`` (the official DINO
release); nothing is downloaded.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from core.checkpoint import CheckpointError, load_weights, read_state_dict
from core.perceptual import MissingWeightsError

DINO_WEIGHTS_FILE = "dino_deitsmall16_pretrain.pth"
DINO_WEIGHTS_URL = "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224
FEATURE_BLOCKS = (2, 5, 8, 11)  # features after these blocks, plus the patch embedding


# -- frozen backbone (key layout of the official DINO release) -------------------------------------
class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViTSmall(nn.Module):
    """DINO ViT-S/16 at 224 px (384 wide, 6 heads, 12 blocks); returns token features, not a class."""

    def __init__(self, dim: int = 384, heads: int = 6, depth: int = 12, patch: int = 16) -> None:
        super().__init__()
        self.embed_dim = dim
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (INPUT_SIZE // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # in the checkpoint; the discriminator reads pre-norm tokens

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised 224 px images -> (B, 197, C) tokens: cls first, positions added."""
        tokens = self.patch_embed(x)
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed

    def features(self, x: torch.Tensor, blocks: tuple[int, ...] = FEATURE_BLOCKS) -> list[torch.Tensor]:
        """(B, C, 196) maps, cls token added to every patch token: the embedding, then after ``blocks``."""
        tokens = self.embed(x)
        out = [_readout(tokens)]
        for i, block in enumerate(self.blocks[: max(blocks) + 1]):
            tokens = block(tokens)
            if i in blocks:
                out.append(_readout(tokens))
        return out


def _readout(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens[:, 1:] + tokens[:, :1]).transpose(1, 2)


def find_dino_weights(path: str | os.PathLike | None) -> Path:
    """The local DINO file, or a MissingWeightsError saying which file to put where."""
    if path and Path(path).is_file():
        return Path(path)
    where = f"at {path}" if path else "(no path given)"
    raise MissingWeightsError(
        f"the DINO discriminator needs {DINO_WEIGHTS_FILE!r} (the official DINO ViT-S/16 release, {DINO_WEIGHTS_URL}); "
        f"not found {where}. Download it on a machine with internet, copy it here and set "
        f"stage3.dino_weights to its path; nothing is downloaded at run time.")


def load_dino_backbone(path: str | os.PathLike | None) -> DinoViTSmall:
    """Frozen DINO ViT-S/16 from a local file, the key bias of every qkv projection zeroed (as upstream)."""
    file = find_dino_weights(path)
    state = read_state_dict(file)  # torch.load(weights_only=True)
    for key, value in state.items():
        if key.endswith("attn.qkv.bias"):
            dim = value.numel() // 3
            value = value.clone()
            value[dim: 2 * dim] = 0  # a key bias only shifts each query's logits by a constant
            state[key] = value
    backbone = DinoViTSmall()
    report = load_weights(backbone, state, strict=False, source=str(file))
    if report.missing:
        raise CheckpointError(f"{file} is not a DINO ViT-S/16 state dict ({DINO_WEIGHTS_FILE} layout): {report.describe()}")
    backbone.eval()
    backbone.requires_grad_(False)
    return backbone


# -- DiffAugment ----------------------------------------------------------------------------------
def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-image integer shift with zero fill: ``out[b, :, i, j] = x[b, :, i + dy[b], j + dx[b]]``."""
    b, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy.view(b, 1, 1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx.view(b, 1, 1) + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    return padded[torch.arange(b, device=x.device).view(b, 1, 1), rows, cols].permute(0, 3, 1, 2)


def colour_jitter(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Add ``brightness``, scale the spread across channels by ``saturation`` and around the image mean by ``contrast``."""
    shape = (-1, 1, 1, 1)
    x = x + brightness.view(shape)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * saturation.view(shape) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast.view(shape) + mean


def cutout(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero the ``size`` rectangle starting at (``top[b]``, ``left[b]``) of each image, clipped to the image."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = top.view(b, 1, 1), left.view(b, 1, 1)
    hole = (ys >= top) & (ys < top + size[0]) & (xs >= left) & (xs < left + size[1])
    return x * (~hole).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, translation: float = 0.125, cutout_ratio: float = 0.2,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020) of images in [-1, 1], every draw per image, as the official loss applies it.

    Translation by up to ``translation`` of the side (zero fill); brightness in [-0.5, 0.5),
    saturation x [0, 2), contrast x [0.5, 1.5); one zeroed square of side ``cutout_ratio``.
    """
    b, _, h, w = x.shape
    r = torch.rand(7, b, generator=generator).to(x.device)
    my, mx = round(h * translation), round(w * translation)
    x = translate(x, (r[0] * (2 * my + 1)).floor().long() - my, (r[1] * (2 * mx + 1)).floor().long() - mx)
    x = colour_jitter(x, (r[2] - 0.5).to(x.dtype), (r[3] * 2).to(x.dtype), (r[4] + 0.5).to(x.dtype))
    ch, cw = round(h * cutout_ratio), round(w * cutout_ratio)
    top = (r[5] * (h + 1 - ch % 2)).floor().long() - ch // 2  # centre anywhere on the image
    left = (r[6] * (w + 1 - cw % 2)).floor().long() - cw // 2
    return cutout(x, top, left, (ch, cw))


# -- trainable heads ------------------------------------------------------------------------------
class BatchNormLocal(nn.Module):
    """Batch-norm with batch statistics over virtual batches of ``virtual_batch`` images, train and eval alike."""

    def __init__(self, channels: int, virtual_batch: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        self.virtual_batch = virtual_batch
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        groups = math.ceil(x.shape[0] / self.virtual_batch)
        parts = []
        for part in torch.tensor_split(x, groups):
            mean = part.mean(dim=(0, 2), keepdim=True)
            var = part.var(dim=(0, 2), keepdim=True, unbiased=False)
            parts.append((part - mean) * torch.rsqrt(var + self.eps))
        return torch.cat(parts) * self.weight[None, :, None] + self.bias[None, :, None]


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) / math.sqrt(2)


def _conv_block(channels: int, kernel: int) -> nn.Sequential:
    conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, padding_mode="circular")
    return nn.Sequential(spectral_norm(conv), BatchNormLocal(channels), nn.LeakyReLU(0.2))


def discriminator_head(channels: int, kernel: int = 9) -> nn.Sequential:
    """k=1 block, residual circular k=``kernel`` block, k=1 conv to one logit per token."""
    return nn.Sequential(_conv_block(channels, 1), _Residual(_conv_block(channels, kernel)),
                         spectral_norm(nn.Conv1d(channels, 1, 1)))


# -- LeCam regulariser ----------------------------------------------------------------------------
class LeCamEMA(nn.Module):
    """LeCam regulariser (Tseng et al. 2021) with EMA anchors of the mean real and fake logits.

    ``relu(mean D(real) - ema_fake)^2 + relu(ema_real - mean D(fake))^2``; the anchors start at 0
    and are updated after the term is computed. Buffers, so they are checkpointed with the heads.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        real, fake = logits_real.float().mean(), logits_fake.float().mean()
        loss = F.relu(real - self.ema_fake).pow(2) + F.relu(self.ema_real - fake).pow(2)
        with torch.no_grad():
            self.ema_real.mul_(self.decay).add_((1 - self.decay) * real.detach())
            self.ema_fake.mul_(self.decay).add_((1 - self.decay) * fake.detach())
        return loss


def hinge_lecam_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, lecam: LeCamEMA | None,
                       lecam_weight: float) -> torch.Tensor:
    """Hinge discriminator loss, plus ``lecam_weight`` x LeCam when ``lecam`` is given."""
    loss = 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    if lecam is not None and lecam_weight > 0:
        loss = loss + lecam_weight * lecam(logits_real, logits_fake)
    return loss


# -- the discriminator ----------------------------------------------------------------------------
class DinoDiscriminator(nn.Module):
    """Frozen DINO ViT-S/16 features -> 5 trainable heads -> concatenated per-token logits (B, 5 * 196).

    Input images in [0, 1], any size. In training mode each call draws DiffAugment and (for inputs
    larger than 224 px, with probability ``crop_prob``) a random 224 crop instead of the area resize.
    """

    def __init__(self, weights: str | os.PathLike | None, kernel_size: int = 9, crop_prob: float = 0.5,
                 augment: bool = True, lecam_weight: float = 0.001, lecam_decay: float = 0.999) -> None:
        super().__init__()
        backbone = load_dino_backbone(weights)
        self._frozen = (backbone,)  # a tuple hides it from parameters(), state_dict() and requires_grad_()
        self.crop_prob = crop_prob
        self.augment = augment
        self.lecam_weight = lecam_weight
        self.heads = nn.ModuleList(discriminator_head(backbone.embed_dim, kernel_size) for _ in range(len(FEATURE_BLOCKS) + 1))
        self.lecam = LeCamEMA(lecam_decay)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def backbone(self) -> DinoViTSmall:
        return self._frozen[0]

    def _apply(self, fn: Callable, *args, **kwargs) -> "DinoDiscriminator":  # .to(), .cuda(), .half() reach the backbone
        super()._apply(fn, *args, **kwargs)
        self.backbone._apply(fn, *args, **kwargs)
        return self

    def backbone_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> (DiffAugment) -> ImageNet-normalised 224 x 224."""
        x = images.float()
        if self.training and self.augment:
            x = (diff_augment(x * 2 - 1) + 1) / 2
        x = (x - self.mean) / self.std
        h, w = x.shape[-2:]
        if self.training and h > INPUT_SIZE and w > INPUT_SIZE and float(torch.rand(())) < self.crop_prob:
            top = int(torch.randint(0, h - INPUT_SIZE + 1, ()))
            left = int(torch.randint(0, w - INPUT_SIZE + 1, ()))
            return x[..., top: top + INPUT_SIZE, left: left + INPUT_SIZE]
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone_input(images)
        with torch.set_grad_enabled(torch.is_grad_enabled() and images.requires_grad):
            features = self.backbone.features(x)
        return torch.cat([head(f).flatten(1) for head, f in zip(self.heads, features)], dim=1)

    def loss(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """Hinge + LeCam (official stage-3 discriminator loss)."""
        return hinge_lecam_d_loss(logits_real, logits_fake, self.lecam, self.lecam_weight)
