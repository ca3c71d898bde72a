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
from .kernels import linear


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

    def forward(self, x: torch.Tensor, queries: torch.Tensor | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, W) -> (B, L, W); with ``queries`` (B, M, W) only those M positions attend (-> (B, M, W)).
        ``residual`` (the output's shape) is added to the output (fused into the output projection)."""
        b, l, w = x.shape
        h, d = self.heads, w // self.heads
        if queries is None:
            qkv = linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3W)
            q, k, v = qkv.view(b, l, 3, h, d).permute(2, 0, 3, 1, 4)
        else:
            q = linear(queries, self.in_proj_weight[:w], self.in_proj_bias[:w]).view(b, -1, h, d).transpose(1, 2)
            kv = linear(x, self.in_proj_weight[w:], self.in_proj_bias[w:])  # (B, L, 2W)
            k, v = kv.view(b, l, 2, h, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, M, W/H)
        return linear(out.transpose(1, 2).reshape(b, q.shape[2], w), self.out_proj.weight, self.out_proj.bias,
                      residual=residual)


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)); exact GELU, LayerNorm eps 1e-5."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = PackedSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = width * mlp_ratio
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """x (B, L, W) -> (B, L, W).

        ``rows`` (a slice, or (B, M) int64 positions) computes only those output positions: keys and
        values still come from all L, so the result equals those rows of the full output at a
        fraction of the cost. Used for the last block, whose other outputs nobody reads.
        """
        y = self.ln_1(x)
        if rows is None:
            x = self.attn(y, residual=x)
        else:
            if isinstance(rows, slice):
                x_rows, y_rows = x[:, rows], y[:, rows]
            else:
                index = rows.unsqueeze(-1).expand(-1, -1, x.shape[-1])
                x_rows, y_rows = x.gather(1, index), y.gather(1, index)
            x = self.attn(y, queries=y_rows, residual=x_rows)
        fc, proj = self.mlp.c_fc, self.mlp.c_proj  # self.mlp, unrolled so c_fc + GELU run as one call
        return linear(linear(self.ln_2(x), fc.weight, fc.bias, "gelu"), proj.weight, proj.bias, residual=x)


def build_transformer(cfg: VitConfig) -> nn.ModuleList:
    return nn.ModuleList(ResidualAttentionBlock(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
