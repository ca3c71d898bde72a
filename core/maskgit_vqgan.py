"""MaskGIT-VQGAN: the teacher whose code grid SFTok predicts, and whose decoder is SFTok's pixel head.

Keeps two inherited quirks that the official weights depend on: the ResnetBlock applies its
``nin_shortcut`` to the block output (not the input) when channels change, and decoder levels are
stored ascending but run from the last to the first. Images are (B, 3, H, W) in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TeacherConfig


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            return h + self.nin_shortcut(h)  # official quirk: the shortcut reads h, the input is dropped
        return x + h


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], upsample_channels: int | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample_channels is not None:
            self.upsample_conv = nn.Conv2d(upsample_channels, upsample_channels, 3, padding=1)


class VQGANEncoder(nn.Module):
    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        g, hid = cfg.num_groups, cfg.hidden_channels
        self.conv_in = nn.Conv2d(3, hid, 3, padding=1, bias=False)
        in_mult = (1, *cfg.channel_mult)
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.channel_mult):
            block_in, block_out = hid * in_mult[i], hid * mult
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            self.down.append(_Level(blocks))
        self.mid = nn.ModuleList(ResnetBlock(block_in, block_in, g) for _ in range(2))
        self.norm_out = nn.GroupNorm(g, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if i < last:
                h = F.avg_pool2d(h, 2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQGANDecoder(nn.Module):
    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        g, hid = cfg.num_groups, cfg.hidden_channels
        block_in = hid * cfg.channel_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(block_in, block_in, g) for _ in range(2))
        levels: list[nn.Module] = []
        for i in reversed(range(len(cfg.channel_mult))):
            block_out = hid * cfg.channel_mult[i]
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            levels.insert(0, _Level(blocks, upsample_channels=block_in if i > 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = nn.GroupNorm(g, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for block in level.block:
                h = block(h)
            if i > 0:
                h = level.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codeword by squared L2 over ``embedding.weight`` (K, D), no normalisation."""

    def __init__(self, num_embeddings: int, embedding_dim: int, commitment_cost: float = 0.25) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_embeddings, 1.0 / num_embeddings)
        self.commitment_cost = commitment_cost

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, h, w) -> ids (B, h*w) in raster order."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        weight = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ weight.t() + weight.pow(2).sum(1)[None]
        return dist.argmin(dim=1).view(z.shape[0], -1)

    def get_codebook_entry(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, S) with S square, or (B, h, w) -> (B, D, h, w)."""
        if ids.dim() == 2:
            side = int(round(ids.shape[1] ** 0.5))
            if side * side != ids.shape[1]:
                raise ValueError(f"proxy ids: {ids.shape[1]} slots do not form a square grid")
            ids = ids.view(ids.shape[0], side, side)
        return self.embedding(ids).permute(0, 3, 1, 2)

    def soft_entry(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, S, K) -> probability-weighted codewords (B, D, h, w)."""
        b, s, _ = probs.shape
        side = int(round(s ** 0.5))
        z = probs @ self.embedding.weight  # (B, S, D)
        return z.transpose(1, 2).reshape(b, -1, side, side)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Straight-through quantisation: (z_q, ids, loss) with codebook + commitment terms."""
        ids = self.indices(z.detach())
        zq = self.get_codebook_entry(ids)
        loss = F.mse_loss(zq, z.detach()) + self.commitment_cost * F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), ids, loss


class MaskGITVQGAN(nn.Module):
    """Encoder + VectorQuantizer + decoder. ``encode`` gives the proxy codes SFTok learns to predict."""

    def __init__(self, cfg: TeacherConfig | None = None) -> None:
        super().__init__()
        self.config = cfg or TeacherConfig()
        self.encoder = VQGANEncoder(self.config)
        self.quantize = VectorQuantizer(self.config.codebook_size, self.config.z_channels, self.config.commitment_cost)
        self.decoder = VQGANDecoder(self.config)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> proxy codes (B, S) int64."""
        return self.quantize.indices(self.encoder(images.float()))

    def decode_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Hard ids (B, S) -> images clamped to [0, 1] (the teacher wrapper clamps; the pixel head does not)."""
        return self.decoder(self.quantize.get_codebook_entry(ids)).clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, ids, quantizer loss)."""
        zq, ids, loss = self.quantize(self.encoder(images))
        return self.decoder(zq), ids, loss
