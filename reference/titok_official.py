"""A literal port of the official TiTok inference path (bytedance/1d-tokenizer ``modeling/titok.py``).

Written from /work/shared/reference/titok-official.md sections 2-3: ``nn.MultiheadAttention`` blocks on
sequence-first tensors, the legacy raw reshape before the encoder's 1x1 conv, a quantiser that
normalises, computes |z|^2 + |e|^2 - 2 z.e and takes argmin, a decoder that runs its 1x1-conv head on a
(B, W, 16, 16) grid and returns channel-first logits (B, 1024, 16, 16), and soft pixel decoding through
softmax over dim 1 + einsum with the codebook. Outputs are unclamped, as upstream. Parameter names are
the release's, so one state dict loads into this and ``core.titok.TiTok``. Only the tests import it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .official_modules import ResidualAttentionBlock, TiTokEncoder, VectorQuantizer, VQGANDecoder, _expand_token


class L2VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int = 4096, token_size: int = 12) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, token_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = z.float()
        z = z.permute(0, 2, 3, 1).contiguous()  # (B, 1, N, C)
        z_flat = z.view(-1, z.shape[-1])
        z_flat = F.normalize(z_flat, dim=-1)
        embedding = F.normalize(self.embedding.weight, dim=-1)
        z = F.normalize(z, dim=-1)
        d = (torch.sum(z_flat ** 2, dim=1, keepdim=True) + torch.sum(embedding ** 2, dim=1)
             - 2 * torch.einsum("bd,dn->bn", z_flat, embedding.T))
        indices = torch.argmin(d, dim=1)
        z_q = self.get_codebook_entry(indices).view(z.shape)
        z_q = z + (z_q - z).detach()
        z_q = z_q.permute(0, 3, 1, 2).contiguous()
        return z_q, {"min_encoding_indices": indices.view(z_q.shape[0], z_q.shape[2], z_q.shape[3])}

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedding(indices), dim=-1)


class TiTokDecoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, token_size: int = 12, num_latent_tokens: int = 64,
                 grid: int = 16, proxy_vocab: int = 1024) -> None:
        super().__init__()
        self.width, self.grid, self.num_latent_tokens = width, grid, num_latent_tokens
        scale = width ** -0.5
        self.decoder_embed = nn.Linear(token_size, width, bias=True)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid ** 2 + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1, bias=True), nn.Tanh(),
                                 nn.Conv2d(2 * width, proxy_vocab, 1, bias=True))
        self.conv_out = nn.Identity()

    def forward(self, z_quantized: torch.Tensor) -> torch.Tensor:
        n, c, h, w = z_quantized.shape
        assert h == 1 and w == self.num_latent_tokens
        x = self.decoder_embed(z_quantized.reshape(n, c * h, w).permute(0, 2, 1))
        batch, seq_len, _ = x.shape
        mask_tokens = self.mask_token.repeat(batch, self.grid ** 2, 1).to(x.dtype)
        mask_tokens = torch.cat([_expand_token(self.class_embedding, batch).to(x.dtype), mask_tokens], dim=1)
        mask_tokens = mask_tokens + self.positional_embedding.to(x.dtype)
        x = x + self.latent_token_positional_embedding[:seq_len]
        x = self.ln_pre(torch.cat([mask_tokens, x], dim=1))
        x = x.permute(1, 0, 2)
        for block in self.transformer:
            x = block(x)
        x = x.permute(1, 0, 2)
        x = self.ln_post(x[:, 1:1 + self.grid ** 2])
        x = x.permute(0, 2, 1).reshape(batch, self.width, self.grid, self.grid)
        return self.conv_out(self.ffn(x.contiguous()))  # (B, 1024, 16, 16)


class OfficialTiTok(nn.Module):
    """``encoder``/``decoder``: (width, depth, heads). ``teacher``: the pixel head's MaskGIT-VQGAN shape."""

    def __init__(self, encoder=(768, 12, 12), decoder=(768, 12, 12), image_size: int = 256, patch_size: int = 16,
                 num_latent_tokens: int = 64, token_size: int = 12, codebook_size: int = 4096,
                 teacher: dict | None = None, finetune_decoder: bool = True) -> None:
        super().__init__()
        t = dict(teacher or {})
        proxy_vocab = t.get("codebook_size", 1024)
        grid = image_size // patch_size
        self.latent_tokens = nn.Parameter(encoder[0] ** -0.5 * torch.randn(num_latent_tokens, encoder[0]))
        self.encoder = TiTokEncoder(*encoder, image_size, patch_size, num_latent_tokens, token_size)
        self.decoder = TiTokDecoder(*decoder, token_size, num_latent_tokens, grid, proxy_vocab)
        self.quantize = L2VectorQuantizer(codebook_size, token_size)
        self.finetune_decoder = finetune_decoder
        if finetune_decoder:
            self.pixel_quantize = VectorQuantizer(proxy_vocab, t.get("z_channels", 256))
            self.pixel_decoder = VQGANDecoder(t.get("hidden_channels", 128), tuple(t.get("channel_mult", (1, 1, 2, 2, 4))),
                                              t.get("num_res_blocks", 2), t.get("z_channels", 256), t.get("num_groups", 32))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.quantize(self.encoder(pixel_values=x, latent_tokens=self.latent_tokens))

    @torch.no_grad()
    def decode(self, z_quantized: torch.Tensor) -> torch.Tensor:
        decoded = self.decoder(z_quantized)
        if self.finetune_decoder:
            soft = decoded.softmax(1)
            latent = torch.einsum("nchw,cd->ndhw", soft, self.pixel_quantize.embedding.weight)
            decoded = self.pixel_decoder(latent)
        return decoded

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.squeeze(1)
        batch, seq_len = tokens.shape
        z_q = self.quantize.get_codebook_entry(tokens.reshape(-1)).reshape(batch, 1, seq_len, -1)
        return self.decode(z_q.permute(0, 3, 1, 2).contiguous())


def official_titok_twin(model: nn.Module) -> OfficialTiTok:
    """The literal official-layout TiTok holding exactly ``model``'s weights (strict load)."""
    cfg, t = model.config, model.config.teacher
    ref = OfficialTiTok(
        encoder=(cfg.encoder.width, cfg.encoder.depth, cfg.encoder.heads),
        decoder=(cfg.decoder.width, cfg.decoder.depth, cfg.decoder.heads),
        image_size=cfg.image_size, patch_size=cfg.patch_size, num_latent_tokens=cfg.num_latent_tokens,
        token_size=cfg.token_size, codebook_size=cfg.codebook_size, finetune_decoder=cfg.has_pixel_head,
        teacher=dict(hidden_channels=t.hidden_channels, channel_mult=t.channel_mult, num_res_blocks=t.num_res_blocks,
                     z_channels=t.z_channels, codebook_size=t.codebook_size, num_groups=t.num_groups))
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref.eval()
