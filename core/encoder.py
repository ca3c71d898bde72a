"""TiTok-style ViT encoder: [cls, patches, latent tokens] -> 64 token vectors of size token_size."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .config import VitConfig
from .vit import build_transformer


class EncoderShape(Protocol):
    """The config fields the encoder reads; SFTokConfig and TiTokConfig both carry them."""

    image_size: int
    patch_size: int
    encoder: VitConfig
    num_latent_tokens: int
    token_size: int


class TiTokEncoder(nn.Module):
    """Encodes images (B, 3, H, W) in [0, 1] into z of shape (B, token_size, 1, num_latent_tokens).

    The learned latent tokens are owned by the top-level model (official key ``latent_tokens``) and
    passed in. The output keeps TiTok's legacy raw reshape (B, N, W) -> (B, W, N, 1), which the
    official weights depend on: it is a reinterpretation of memory, not a transpose.
    """

    def __init__(self, cfg: EncoderShape) -> None:
        super().__init__()
        width, grid = cfg.encoder.width, cfg.image_size // cfg.patch_size
        scale = width ** -0.5
        self.num_latent_tokens = cfg.num_latent_tokens
        self.token_size = cfg.token_size
        self.patch_embed = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=True)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(cfg.num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_transformer(cfg.encoder)
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, cfg.token_size, kernel_size=1, bias=True)

    def forward(self, pixels: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (B, P, W)
        cls = self.class_embedding.to(x.dtype).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        latents = latent_tokens.to(x.dtype).expand(b, -1, -1) + self.latent_token_positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([x, latents], dim=1))
        for block in self.transformer[:-1]:
            x = block(x)
        # Only the latent-token outputs are read: the last block computes just those rows.
        x = self.ln_post(self.transformer[-1](x, rows=slice(-self.num_latent_tokens, None)))  # (B, N, W)
        width = x.shape[-1]
        x = x.reshape(b, width, self.num_latent_tokens, 1)  # legacy raw reshape, not a transpose
        z = self.conv_out(x)  # (B, C, N, 1)
        return z.reshape(b, self.token_size, 1, self.num_latent_tokens)
