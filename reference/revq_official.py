"""A literal port of ReVQ's inference modules (Neur-IO/ReVQ ``src/xvq``) and the diffusers blocks they use.

Written from /work/shared/reference/revq-official.md sections 3-6: ``Preprocessor`` (view as (B, 2048),
(x - mean) / std), ``Viewer`` (plain views), ``Quantizer`` (per-group ``torch.cdist`` argmin through
``torch.vmap`` with chunk size 2, codes gathered from the flattened table with ``index_offset``, ``count``
updated even in eval), and ``DCAEDecoder`` with EfficientViT blocks: q/k/v projections concatenated,
multiscale branch, 6C channels reshaped into groups of 3*d and chunked, ReLU, linear attention by padding
v with a row of ones, RMSNorm channel-last. Parameter names are the release's. Only the tests import it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Preprocessor(nn.Module):
    def __init__(self, input_data_size=(32, 8, 8)) -> None:
        super().__init__()
        self.size = list(input_data_size)
        numel = 1
        for s in self.size:
            numel *= s
        self.register_buffer("mean", torch.zeros(numel))
        self.register_buffer("std", torch.ones(numel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return ((x.view(b, -1) - self.mean) / self.std).view(b, *self.size).detach()

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return (x.view(b, -1) * self.std + self.mean).view(b, *self.size)


class Viewer:
    def __init__(self, input_size=(32, 8, 8), code_dim: int = 4) -> None:
        self.input_size, self.code_dim = list(input_size), code_dim

    def shuffle(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.code_dim)

    def unshuffle(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.input_size)


class Quantizer(nn.Module):
    def __init__(self, code_dim: int, num_code: int, num_group: int, tokens_per_data: int) -> None:
        super().__init__()
        self.code_dim, self.num_code, self.num_group, self.tokens_per_data = code_dim, num_code, num_group, tokens_per_data
        self.embeddings = nn.Parameter(torch.randn(num_group, num_code, code_dim))
        self.register_buffer("index_offset", torch.arange(num_group, dtype=torch.long) * num_code)
        self.register_buffer("count", torch.zeros(num_group, num_code))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t, d = x.shape
        assert t == self.tokens_per_data and d == self.code_dim
        x = x.view(-1, self.num_group, d).permute(1, 0, 2)  # (G, B', D)
        with torch.no_grad():
            def nearest(points, codes):
                return torch.cdist(points, codes, p=2).argmin(dim=-1)
            indices = torch.vmap(nearest, chunk_size=2)(x, self.embeddings)  # (G, B')
            self.count.scatter_add_(1, indices, torch.ones_like(indices, dtype=self.count.dtype))  # (G, B')
        indices = indices.permute(1, 0).reshape(b, -1)  # (B, G) local ids
        flat = self.embeddings.view(-1, d)
        x_quant = flat[(indices + self.index_offset).reshape(-1)].view(b, t, d)
        return {"x_quant": x_quant, "indices": indices}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        hidden_states = hidden_states.to(self.weight.dtype) * self.weight + self.bias
        return hidden_states.to(input_dtype)


class MultiscaleProjection(nn.Module):
    def __init__(self, in_channels: int, heads: int, kernel: int) -> None:
        super().__init__()
        channels = 3 * in_channels
        self.proj_in = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, 1, 0, groups=3 * heads, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.proj_in(x))


class SanaMultiscaleLinearAttention(nn.Module):
    def __init__(self, channels: int, head_dim: int = 32, kernel: int = 5, eps: float = 1e-15) -> None:
        super().__init__()
        heads = channels // head_dim
        self.head_dim, self.eps = head_dim, eps
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_qkv_multiscale = nn.ModuleList([MultiscaleProjection(channels, heads, kernel)])
        self.to_out = nn.Linear(2 * channels, channels, bias=False)
        self.norm_out = RMSNorm(channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        batch, _, height, width = hidden_states.shape
        dtype = hidden_states.dtype
        hidden_states = hidden_states.movedim(1, -1)
        qkv = torch.cat([self.to_q(hidden_states), self.to_k(hidden_states), self.to_v(hidden_states)], dim=3).movedim(-1, 1)
        hidden_states = torch.cat([qkv] + [block(qkv) for block in self.to_qkv_multiscale], dim=1)
        use_linear = height * width > self.head_dim
        if use_linear:
            hidden_states = hidden_states.to(torch.float32)
        hidden_states = hidden_states.reshape(batch, -1, 3 * self.head_dim, height * width)
        query, key, value = hidden_states.chunk(3, dim=2)
        query, key = F.relu(query), F.relu(key)
        assert use_linear, "the reference covers the linear path (H*W > head_dim) only"
        value = F.pad(value, (0, 0, 0, 1), mode="constant", value=1)
        scores = torch.matmul(value.float(), key.transpose(-1, -2).float())
        hidden_states = torch.matmul(scores, query.float())
        hidden_states = (hidden_states[:, :, :-1] / (hidden_states[:, :, -1:] + self.eps)).to(dtype)
        hidden_states = torch.reshape(hidden_states, (batch, -1, height, width))
        hidden_states = self.to_out(hidden_states.movedim(1, -1)).movedim(-1, 1)
        hidden_states = self.norm_out(hidden_states.movedim(1, -1)).movedim(-1, 1)
        return hidden_states + residual


class GLUMBConv(nn.Module):
    def __init__(self, channels: int, expand_ratio: int = 4) -> None:
        super().__init__()
        hidden = expand_ratio * channels
        self.conv_inverted = nn.Conv2d(channels, hidden * 2, 1, 1, 0)
        self.conv_depth = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2)
        self.conv_point = nn.Conv2d(hidden, channels, 1, 1, 0, bias=False)
        self.norm = RMSNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = F.silu(self.conv_inverted(x))
        x, gate = torch.chunk(self.conv_depth(x), 2, dim=1)
        x = self.conv_point(x * F.silu(gate))
        x = self.norm(x.movedim(1, -1)).movedim(-1, 1)
        return x + residual


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int = 32, kernel: int = 5) -> None:
        super().__init__()
        self.attn = SanaMultiscaleLinearAttention(channels, head_dim, kernel)
        self.conv_out = GLUMBConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.attn(x))


class DCAEDecoder(nn.Module):
    """One-stage ReVQ rectifier: ``in_channels = latent_channels``, EfficientViT blocks only."""

    def __init__(self, in_channels: int = 32, latent_channels: int = 32, attention_head_dim: int = 32,
                 block_out_channels=(512,), layers_per_block=(3,), qkv_multiscales=((5,),)) -> None:
        super().__init__()
        width = block_out_channels[-1]
        self.conv_in = nn.Conv2d(latent_channels, width, 3, 1, 1)
        self.in_shortcut_repeats = width // latent_channels
        blocks = [EfficientViTBlock(width, attention_head_dim, qkv_multiscales[0][0]) for _ in range(layers_per_block[0])]
        self.up_blocks = nn.ModuleList([nn.Sequential(*blocks)])
        self.norm_out = RMSNorm(width)
        self.conv_act = nn.ReLU()
        self.conv_out = nn.Conv2d(width, in_channels, 3, 1, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.repeat_interleave(self.in_shortcut_repeats, dim=1)
        hidden_states = self.conv_in(hidden_states) + x
        for up_block in reversed(self.up_blocks):
            hidden_states = up_block(hidden_states)
        hidden_states = self.norm_out(hidden_states.movedim(1, -1)).movedim(-1, 1)
        return self.conv_out(self.conv_act(hidden_states))


class OfficialReVQ:
    """The official latent pipeline around the three modules (README Option 2 / scripts/eval.py order)."""

    def __init__(self, cfg) -> None:
        self.preprocessor = Preprocessor(cfg.latent_shape)
        self.quantizer = Quantizer(cfg.code_dim, cfg.num_code, cfg.tokens, cfg.tokens)
        self.decoder = DCAEDecoder(cfg.latent_shape[0], cfg.latent_shape[0], cfg.attention_head_dim,
                                   (cfg.rectifier_width,), (cfg.rectifier_layers,), ((cfg.multiscale_kernel,),))
        self.viewer = Viewer(cfg.latent_shape, cfg.code_dim)

    @torch.no_grad()
    def latent_round_trip(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw latent -> (ids (B, T), reconstructed raw latent)."""
        out = self.quantizer(self.viewer.shuffle(self.preprocessor(latent.contiguous())))
        rectified = self.decoder(self.viewer.unshuffle(out["x_quant"]))
        return out["indices"], self.preprocessor.inverse(rectified.contiguous())


def official_revq_twin(model: nn.Module) -> OfficialReVQ:
    """The literal official modules holding exactly ``model``'s weights (strict loads, part by part)."""
    ref = OfficialReVQ(model.config)
    ref.preprocessor.load_state_dict(model.preprocessor.state_dict(), strict=True)
    ref.quantizer.load_state_dict(model.quantizer.state_dict(), strict=True)
    ref.decoder.load_state_dict(model.decoder.state_dict(), strict=True)
    ref.decoder.eval()
    return ref
