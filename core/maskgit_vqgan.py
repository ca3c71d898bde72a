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
        inplace = not torch.is_grad_enabled()  # SiLU over the fresh norm output: no extra buffer at inference
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self.conv2(F.silu(self.norm2(h), inplace=inplace))
        if self.nin_shortcut is not None:  # official quirk: the shortcut reads h, the input is dropped
            return self.nin_shortcut(h).add_(h) if inplace else h + self.nin_shortcut(h)
        return h.add_(x) if inplace else x + h  # in place into the fresh conv output: no new buffer


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], upsample_channels: int | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample_channels is not None:
            self.upsample_conv = nn.Conv2d(upsample_channels, upsample_channels, 3, padding=1)


def _fold_taps(weight: torch.Tensor, phase: int, dim: int) -> torch.Tensor:
    """Merge the 3 taps of ``dim`` into the 2 that one output phase of a 2x-upsampled input reads."""
    t0, t1, t2 = weight.unbind(dim)
    return torch.stack([t0, t1 + t2] if phase == 0 else [t0 + t1, t2], dim)


def upsample2x_conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(nearest_upsample_2x(x))`` for a 3x3, stride-1, padding-1 conv, computed at low resolution.

    Output pixel (2i+a, 2j+b) of a 3x3 conv over a nearest-upsampled map reads only 2x2 distinct
    input pixels, so each of the 4 phases (a, b) is a 2x2 conv with summed weights: 16 instead of
    36 multiply-adds per output value (the upsampled map is never built). All 4 phases run as one
    conv with 4x the output channels; then they are interleaved. Same result up to float rounding.
    """
    b, _, h, w = x.shape
    out_ch = conv.weight.shape[0]
    weight = torch.cat([_fold_taps(_fold_taps(conv.weight, pa, 2), pb, 3) for pa in (0, 1) for pb in (0, 1)])
    bias = None if conv.bias is None else conv.bias.repeat(4)
    y = F.conv2d(x, weight, bias, padding=1)  # (B, 4*O, H+1, W+1); phase (a, b) is the window at (a, b)
    phases = [y[:, k * out_ch:(k + 1) * out_ch, pa:pa + h, pb:pb + w] for k, (pa, pb) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])]
    if x.is_contiguous(memory_format=torch.channels_last):
        out = y.new_empty(b, h, 2, w, 2, out_ch)
        for k, (pa, pb) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            out[:, :, pa, :, pb] = phases[k].permute(0, 2, 3, 1)
        return out.view(b, 2 * h, 2 * w, out_ch).permute(0, 3, 1, 2)  # channels_last strides
    out = y.new_empty(b, out_ch, h, 2, w, 2)
    for k, (pa, pb) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[:, :, :, pa, :, pb] = phases[k]
    return out.view(b, out_ch, 2 * h, 2 * w)


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

    def forward(self, z: torch.Tensor, skip_levels: int = 0) -> torch.Tensor:
        """z (B, z_channels, h, w) -> images (B, 3, h*f, w*f), unclamped, contiguous.

        ``skip_levels`` > 0 stops before the last ``skip_levels`` upsamplings and their levels and
        applies the output layers there: a picture 2**skip_levels times smaller for a fraction of the
        cost (the full-resolution levels hold most of the FLOPs), for previews. Allowed only where that
        level has the output layers' channel count. On CPU the activations run channels-last (oneDNN's
        preferred layout for these convs); the upsampling convs run at low resolution
        (:func:`upsample2x_conv3x3`).
        """
        self.check_skip_levels(skip_levels)
        if z.device.type == "cpu":
            z = z.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for i in reversed(range(skip_levels, len(self.up))):
            level = self.up[i]
            for block in level.block:
                h = block(h)
            if i > skip_levels:
                h = upsample2x_conv3x3(h, level.upsample_conv)
        return self.conv_out(F.silu(self.norm_out(h))).contiguous()

    def check_skip_levels(self, skip_levels: int) -> None:
        """Refuse a ``skip_levels`` whose level does not end in the output layers' channel count."""
        if skip_levels == 0:
            return
        if not 0 < skip_levels < len(self.up):
            raise ValueError(f"skip_levels: must be in 0..{len(self.up) - 1}, got {skip_levels}")
        width = self.up[skip_levels].block[-1].conv2.out_channels
        if width != self.norm_out.num_channels:
            raise ValueError(f"skip_levels={skip_levels}: that level has {width} channels, the output layers take "
                             f"{self.norm_out.num_channels}")


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
        # Same op order as upstream, so near-ties break the same way.
        dist = flat.pow(2).sum(1, keepdim=True) + weight.pow(2).sum(1) - 2 * (flat @ weight.t())
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
