"""A literal, slow-but-obvious re-implementation of the official SFTok inference modules.

Written from /work/shared/reference/sftok-official.md (sections 1-3, 9), in the official layout:
``nn.MultiheadAttention`` in sequence-first (L, B, W) layout, the decoder head as Conv2d on a
(B, W, 16, 16) grid, OptVQ with ``torch.cdist`` + 5 Sinkhorn iterations, TF-style "SAME" padding
computed at run time in the MaskGIT-VQGAN, and the MaskGIT ``generate`` loop drawing Gumbel noise
from the *global* torch RNG in the official order (two draws per step, the last step included).

Module and parameter names reproduce the official state-dict keys, so one state dict loads into
both this and ``core.SFTok``. It exists only as the baseline for equivalence tests and for the
speed ratio in ``bench/decode.py``; nothing in the product imports it.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

MASK_ID = 1024


# -- ViT pieces (TiTok's ResidualAttentionBlock) ---------------------------------------------------
class ResidualAttentionBlock(nn.Module):
    """Pre-norm block on (L, B, W) tensors with ``nn.MultiheadAttention``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(4 * width, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(query=y, key=y, value=y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def _expand_token(token: torch.Tensor, batch: int) -> torch.Tensor:
    return token.unsqueeze(0).expand(batch, -1, -1)


class TiTokEncoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, image_size: int = 256, patch_size: int = 16,
                 num_latent_tokens: int = 64, token_size: int = 32) -> None:
        super().__init__()
        self.width, self.grid = width, image_size // patch_size
        self.num_latent_tokens, self.token_size = num_latent_tokens, token_size
        scale = width ** -0.5
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=True)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, token_size, kernel_size=1, bias=True)

    def forward(self, pixel_values: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        batch = pixel_values.shape[0]
        x = self.patch_embed(pixel_values)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([_expand_token(self.class_embedding, batch).to(x.dtype), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        latents = _expand_token(latent_tokens, batch).to(x.dtype) + self.latent_token_positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([x, latents], dim=1))
        x = x.permute(1, 0, 2)  # NLD -> LND
        for block in self.transformer:
            x = block(x)
        x = x.permute(1, 0, 2)
        latents = self.ln_post(x[:, 1 + self.grid ** 2:])
        latents = latents.reshape(batch, self.width, self.num_latent_tokens, 1)  # legacy raw reshape
        latents = self.conv_out(latents)
        return latents.reshape(batch, self.token_size, 1, self.num_latent_tokens)


# -- OptVQ -----------------------------------------------------------------------------------------
class OptVQ(nn.Module):
    def __init__(self, codebook_size: int = 8192, token_size: int = 32) -> None:
        super().__init__()
        self.codebook_size, self.token_size = codebook_size, token_size
        self.embedding = nn.Parameter(torch.randn(1, codebook_size, token_size))
        self.shared_linear = nn.Linear(token_size, token_size)
        self.register_buffer("index_offset", torch.zeros(1, dtype=torch.long))

    @staticmethod
    def sinkhorn(cost: torch.Tensor, epsilon: float = 10.0, iters: int = 5) -> torch.Tensor:
        """cost (n, K) -> transport plan (K, n) scaled by n, as the official helper returns it."""
        _ = (cost - cost.mean()) / (cost.std() + 1e-8)  # official standardisation line; result discarded
        cost = cost - cost.min()
        q = torch.exp(-epsilon * cost).t()
        k, n = q.shape
        q = q / (q.sum() + 1e-8)
        for _ in range(iters):
            q = q / (torch.sum(q, dim=1, keepdim=True) + 1e-8)
            q = q / k
            q = q / (torch.sum(q, dim=0, keepdim=True) + 1e-8)
            q = q / n
        return q * n

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.shared_linear(self.embedding), dim=-1).view(-1, self.token_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = z.float().permute(0, 2, 3, 1).contiguous()  # (B, 1, N, C)
        z_flat = F.normalize(z.view(-1, self.token_size), dim=-1)
        codes = self.codebook()
        with torch.no_grad():
            distance = torch.cdist(z_flat, codes, p=2)
            indices = torch.argmax(self.sinkhorn(distance), dim=0)
        quantized = codes[indices]
        z_q = z_flat + (quantized - z_flat).detach()
        b, h, n, c = z.shape
        z_q = z_q.view(b, h, n, c).permute(0, 3, 1, 2).contiguous()
        return z_q, {"min_encoding_indices": indices.view(b, h, n)}

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N, C) normalised codewords."""
        flat = indices.reshape(-1) + self.index_offset
        return self.codebook()[flat].view(*indices.shape, self.token_size)


# -- Multi-step decoder ----------------------------------------------------------------------------
class MultiStepDecoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, token_size: int = 32, num_latent_tokens: int = 64,
                 codebook_size: int = 1024, grid: int = 16) -> None:
        super().__init__()
        self.width, self.grid, self.codebook_size = width, grid, codebook_size
        scale = width ** -0.5
        self.decoder_embed = nn.Linear(token_size, width, bias=True)
        self.condition_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.learnable_embedding = nn.Embedding(codebook_size + 1, width)
        self.embedding_transform = nn.Identity()
        self.learnable_embedding_positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1, bias=True), nn.Tanh(),
                                 nn.Conv2d(2 * width, codebook_size, 1, bias=True))
        self.conv_out = nn.Identity()

    def forward(self, proxy_codes: torch.Tensor, z_quantized: torch.Tensor) -> torch.Tensor:
        """proxy_codes (B, S) with 1024 = mask, z_quantized (B, C, 1, N) -> logits (B, S, 1024)."""
        b, c, h, w = z_quantized.shape
        cond = z_quantized.reshape(b, c * h, w).permute(0, 2, 1)
        cond = self.decoder_embed(cond) + self.condition_positional_embedding
        x = self.embedding_transform(self.learnable_embedding(proxy_codes))
        x = torch.cat([_expand_token(self.class_embedding, b).to(x.dtype), x], dim=1)
        x = x + self.learnable_embedding_positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([x, cond], dim=1))
        x = x.permute(1, 0, 2)
        for block in self.transformer:
            x = block(x)
        x = x.permute(1, 0, 2)
        x = self.ln_post(x[:, 1:1 + self.grid ** 2])
        x = x.permute(0, 2, 1).reshape(b, self.width, self.grid, self.grid)
        x = self.conv_out(self.ffn(x.contiguous()))  # (B, 1024, 16, 16), NCHW-contiguous
        # A transposed view: its memory is (B, 1024, 256), which fixes the order in which
        # generate()'s zeros_like(logits).uniform_() consumes the RNG stream.
        return x.reshape(b, self.codebook_size, self.grid ** 2).permute(0, 2, 1)

    @torch.no_grad()
    def generate(self, z_quantized: torch.Tensor, num_steps: int = 8, randomize_temperature: float = 1.0,
                 record: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The official loop (reference section 3.2), global RNG; returns (final ids, last logits)."""
        b = z_quantized.shape[0]
        slots = self.grid ** 2
        ids = torch.full((b, slots), self.codebook_size, dtype=torch.long, device=z_quantized.device)
        logits = None
        for step in range(num_steps):
            ratio = (step + 1) / num_steps
            annealed_temp = randomize_temperature * (1.0 - ratio)
            is_mask = ids == self.codebook_size
            logits = self(ids, z_quantized)
            sampled_ids = add_gumbel_noise(logits, annealed_temp).argmax(dim=-1)
            sampled_logits = torch.squeeze(torch.gather(logits, dim=-1, index=torch.unsqueeze(sampled_ids, -1)), -1)
            sampled_ids = torch.where(is_mask, sampled_ids, ids)
            sampled_logits = torch.where(is_mask, sampled_logits, +math.inf).float()
            mask_ratio = math.acos(ratio) / (math.pi * 0.5)
            mask_len = torch.tensor([math.floor(slots * mask_ratio)], dtype=torch.float32, device=ids.device)
            mask_len = torch.maximum(torch.tensor([1.0], device=ids.device),
                                     torch.minimum(torch.sum(is_mask, dim=-1, keepdim=True) - 1, mask_len))[0].squeeze()
            confidence = add_gumbel_noise(sampled_logits, annealed_temp)
            sorted_confidence, _ = torch.sort(confidence, dim=-1)
            cut_off = sorted_confidence[:, mask_len.long() - 1:mask_len.long()]
            masking = confidence <= cut_off
            if record is not None:
                record.append((ids.clone(), logits))
            if step == num_steps - 1:
                ids = sampled_ids
            else:
                ids = torch.where(masking, self.codebook_size, sampled_ids)
        return ids, logits


def gumbel_noise(t: torch.Tensor) -> torch.Tensor:
    noise = torch.zeros_like(t).uniform_(0, 1)
    return -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))


def add_gumbel_noise(t: torch.Tensor, temperature: float) -> torch.Tensor:
    return t + temperature * gumbel_noise(t)


# -- MaskGIT-VQGAN (open-muse port) ----------------------------------------------------------------
class Conv2dSame(nn.Conv2d):
    """TF "SAME" padding computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int = 32) -> None:
        super().__init__()
        self.in_channels, self.out_channels_ = in_channels, out_channels
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.conv1 = Conv2dSame(in_channels, out_channels, kernel_size=3, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = Conv2dSame(out_channels, out_channels, kernel_size=3, bias=False)
        if in_channels != out_channels:
            self.nin_shortcut = Conv2dSame(out_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states)))
        hidden_states = self.conv2(self.dropout(F.silu(self.norm2(hidden_states))))
        if self.in_channels != self.out_channels_:
            residual = self.nin_shortcut(hidden_states)  # the quirk: shortcut of the output
        return hidden_states + residual


class UpsamplingBlock(nn.Module):
    def __init__(self, block_in: int, block_out: int, num_res_blocks: int, add_upsample: bool, groups: int) -> None:
        super().__init__()
        blocks = []
        for _ in range(num_res_blocks):
            blocks.append(ResnetBlock(block_in, block_out, groups))
            block_in = block_out
        self.block = nn.ModuleList(blocks)
        self.add_upsample = add_upsample
        if add_upsample:
            self.upsample_conv = Conv2dSame(block_out, block_out, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.add_upsample:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class DownsamplingBlock(nn.Module):
    def __init__(self, block_in: int, block_out: int, num_res_blocks: int, add_downsample: bool, groups: int) -> None:
        super().__init__()
        blocks = []
        for _ in range(num_res_blocks):
            blocks.append(ResnetBlock(block_in, block_out, groups))
            block_in = block_out
        self.block = nn.ModuleList(blocks)
        self.add_downsample = add_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.add_downsample:
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        return x


class VQGANEncoder(nn.Module):
    def __init__(self, hidden: int = 128, channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 z_channels: int = 256, groups: int = 32) -> None:
        super().__init__()
        self.conv_in = Conv2dSame(3, hidden, kernel_size=3, bias=False)
        in_mult = (1, *channel_mult)
        self.down = nn.ModuleList(
            DownsamplingBlock(hidden * in_mult[i], hidden * channel_mult[i], num_res_blocks, i != len(channel_mult) - 1, groups)
            for i in range(len(channel_mult)))
        mid = hidden * channel_mult[-1]
        self.mid = nn.ModuleList(ResnetBlock(mid, mid, groups) for _ in range(2))
        self.norm_out = nn.GroupNorm(groups, mid, eps=1e-6)
        self.conv_out = Conv2dSame(mid, z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down:
            x = block(x)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class VQGANDecoder(nn.Module):
    def __init__(self, hidden: int = 128, channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 z_channels: int = 256, groups: int = 32) -> None:
        super().__init__()
        block_in = hidden * channel_mult[-1]
        self.conv_in = Conv2dSame(z_channels, block_in, kernel_size=3, bias=True)
        self.mid = nn.ModuleList(ResnetBlock(block_in, block_in, groups) for _ in range(2))
        up = []
        for i in reversed(range(len(channel_mult))):
            block_out = hidden * channel_mult[i]
            up.insert(0, UpsamplingBlock(block_in, block_out, num_res_blocks, i != 0, groups))
            block_in = block_out
        self.up = nn.ModuleList(up)
        self.norm_out = nn.GroupNorm(groups, block_in, eps=1e-6)
        self.conv_out = Conv2dSame(block_in, 3, kernel_size=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for block in reversed(self.up):
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class VectorQuantizer(nn.Module):
    def __init__(self, num_embeddings: int = 1024, embedding_dim: int = 256) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, z.shape[-1])
        weight = self.embedding.weight
        distances = ((flat ** 2).sum(dim=1, keepdim=True) + (weight ** 2).sum(dim=1)
                     - 2 * torch.einsum("bd,dn->bn", flat, weight.t()))
        return torch.argmin(distances, dim=1).view(z.shape[0], -1)


class MaskGITVQGAN(nn.Module):
    """Teacher: images in [0, 1] -> proxy codes (B, 256); codes -> clamped images."""

    def __init__(self, hidden: int = 128, channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 z_channels: int = 256, codebook_size: int = 1024, groups: int = 32) -> None:
        super().__init__()
        self.encoder = VQGANEncoder(hidden, channel_mult, num_res_blocks, z_channels, groups)
        self.decoder = VQGANDecoder(hidden, channel_mult, num_res_blocks, z_channels, groups)
        self.quantize = VectorQuantizer(codebook_size, z_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.quantize.indices(self.encoder(images))

    @torch.no_grad()
    def decode_codes(self, ids: torch.Tensor) -> torch.Tensor:
        side = int(round(ids.shape[1] ** 0.5))
        z = self.quantize.embedding(ids.view(ids.shape[0], side, side)).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(0.0, 1.0)


# -- Top level -------------------------------------------------------------------------------------
class OfficialSFTok(nn.Module):
    """SFTok in the official layout. ``decoder_width/depth/heads`` select B (768/12/12) or L (1024/24/16).

    The ``teacher`` arguments shape the pixel head (defaults: the official f16 MaskGIT-VQGAN);
    ``grid`` must equal image_size / teacher downsampling (16 for the official models).
    """

    def __init__(self, encoder=(768, 12, 12), decoder=(768, 12, 12), image_size: int = 256, patch_size: int = 16,
                 num_latent_tokens: int = 64, token_size: int = 32, codebook_size: int = 8192,
                 teacher: dict | None = None, pixel_head: bool = True) -> None:
        super().__init__()
        teacher = dict(teacher or {})
        proxy_vocab = teacher.pop("codebook_size", 1024)
        channel_mult = tuple(teacher.get("channel_mult", (1, 1, 2, 2, 4)))
        grid = image_size // 2 ** (len(channel_mult) - 1)
        self.latent_tokens = nn.Parameter(encoder[0] ** -0.5 * torch.randn(num_latent_tokens, encoder[0]))
        self.encoder = TiTokEncoder(*encoder, image_size, patch_size, num_latent_tokens, token_size)
        self.decoder = MultiStepDecoder(*decoder, token_size, num_latent_tokens, proxy_vocab, grid)
        self.quantize = OptVQ(codebook_size, token_size)
        self.pixel_head = pixel_head
        if pixel_head:
            self.pixel_quantize = VectorQuantizer(proxy_vocab, teacher.get("z_channels", 256))
            self.pixel_decoder = VQGANDecoder(
                teacher.get("hidden_channels", 128), channel_mult, teacher.get("num_res_blocks", 2),
                teacher.get("z_channels", 256), teacher.get("num_groups", 32))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.quantize(self.encoder(images, self.latent_tokens))

    def z_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) token ids -> z_q (B, C, 1, N), the official get_codebook_entry path."""
        ids = ids.squeeze(1)
        vectors = self.quantize.get_codebook_entry(ids)  # (B, N, C)
        b, n, c = vectors.shape
        return vectors.reshape(b, 1, n, c).permute(0, 3, 1, 2)

    @torch.no_grad()
    def soft_decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Last-step logits (B, S, K) -> unclamped pixels: softmax over codes, einsum, pixel decoder."""
        b, s, k = logits.shape
        side = int(round(s ** 0.5))
        probs = logits.permute(0, 2, 1).reshape(b, k, side, side).softmax(dim=1)
        z = torch.einsum("nchw,cd->ndhw", probs, self.pixel_quantize.embedding.weight)
        return self.pixel_decoder(z)

    @torch.no_grad()
    def decode_tokens(self, ids: torch.Tensor, num_steps: int = 8, randomize_temperature: float = 1.0,
                      record: list | None = None) -> torch.Tensor:
        """(B, 1, N) ids -> unclamped images (B, 3, H, W), Gumbel draws from the global RNG."""
        z_q = self.z_from_ids(ids)
        _, logits = self.decoder.generate(z_q, num_steps, randomize_temperature, record=record)
        return self.soft_decode(logits)


def official_twin(model: nn.Module, share: bool = False) -> "OfficialSFTok":
    """The literal official-layout model holding exactly ``model``'s weights (strict load).

    ``share=True`` builds it on the meta device and assigns ``model``'s tensors (no copy; for benchmarks).
    """
    cfg, t = model.config, model.config.teacher
    with torch.device("meta" if share else "cpu"):
        ref = OfficialSFTok(
            encoder=(cfg.encoder.width, cfg.encoder.depth, cfg.encoder.heads),
            decoder=(cfg.decoder.width, cfg.decoder.depth, cfg.decoder.heads),
            image_size=cfg.image_size, patch_size=cfg.patch_size, num_latent_tokens=cfg.num_latent_tokens,
            token_size=cfg.token_size, codebook_size=cfg.codebook_size, pixel_head=cfg.has_pixel_head,
            teacher=dict(hidden_channels=t.hidden_channels, channel_mult=t.channel_mult, num_res_blocks=t.num_res_blocks,
                         z_channels=t.z_channels, codebook_size=t.codebook_size, num_groups=t.num_groups))
    ref.load_state_dict(model.state_dict(), strict=True, assign=share)
    return ref.eval()
