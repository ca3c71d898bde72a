"""Pre-norm transformer blocks with the official parameter names, attention through SDPA.

Parameter layout matches ``nn.MultiheadAttention`` (packed ``in_proj_weight``/``in_proj_bias``,
``out_proj``) so official state dicts load unchanged, but the computation is batch-first and uses
``scaled_dot_product_attention``. Shapes: B batch, L sequence, W width.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import VitConfig


class PackedSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with nn.MultiheadAttention's parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, W)
        b, l, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3W)
        q, k, v = qkv.view(b, l, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, W/H)
        return self.out_proj(out.transpose(1, 2).reshape(b, l, w))


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)); exact GELU, LayerNorm eps 1e-5."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = PackedSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = width * mlp_ratio
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def build_transformer(cfg: VitConfig) -> nn.ModuleList:
    return nn.ModuleList(ResidualAttentionBlock(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
