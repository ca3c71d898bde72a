"""Multi-step proxy-code decoder: predicts the teacher's code grid from the quantised latent tokens.

Sequence = [cls, S proxy slots, N condition tokens]; logits (B, S, V) over the teacher's V codes in
raster order. Slot id V is the learned mask embedding. Official key names throughout.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import SFTokConfig
from .kernels import linear
from .vit import build_transformer


def sincos_grid(side: int, width: int) -> torch.Tensor:
    """(side*side, width) 2-D sine-cosine positions in raster order: half the channels encode the row, half the column."""
    if width % 4:
        raise ValueError(f"width: must be a multiple of 4 for 2-D sine-cosine positions, got {width}")
    quarter = width // 4
    freqs = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None].double() * freqs[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class MultiStepDecoder(nn.Module):
    def __init__(self, cfg: SFTokConfig) -> None:
        super().__init__()
        width = cfg.decoder.width
        scale = width ** -0.5
        self.num_slots = cfg.num_proxy_codes
        self.grid_size = cfg.grid_size
        self.vocab_size = cfg.proxy_vocab_size
        self.mask_id = cfg.mask_id
        self.num_latent_tokens = cfg.num_latent_tokens
        self.decoder_embed = nn.Linear(cfg.token_size, width, bias=True)
        self.condition_positional_embedding = nn.Parameter(scale * torch.randn(cfg.num_latent_tokens, width))
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.learnable_embedding = nn.Embedding(self.vocab_size + 1, width)
        self.learnable_embedding_positional_embedding = nn.Parameter(scale * torch.randn(self.num_slots + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_transformer(cfg.decoder)
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Tanh(), nn.Conv2d(2 * width, self.vocab_size, 1))

    @torch.no_grad()
    def reset_code_embeddings(self, generator: torch.Generator | None = None, std: float = 0.02) -> None:
        """Draw the code rows of the input table (not the mask row) anew from N(0, std).

        A stage-1 model never reads them (every slot is masked there), so they are still at their initial
        values; from PyTorch's N(0, 1) they would be ~sqrt(width) times longer than a slot's position.
        """
        self._redraw_rows(slice(0, self.vocab_size), generator, std)

    @torch.no_grad()
    def reset_mask_embedding(self, generator: torch.Generator | None = None, std: float = 0.02) -> None:
        """Draw the mask row of the input table anew from N(0, std).

        In stage 1 every slot holds the mask row; at PyTorch's N(0, 1) it is ~sqrt(width) times longer than a
        slot's position, so after the first LayerNorm the slots barely differ from one another.
        """
        self._redraw_rows(slice(self.vocab_size, None), generator, std)

    def _redraw_rows(self, rows: slice, generator: torch.Generator | None, std: float) -> None:
        """Rows ``rows`` of the input table drawn anew from N(0, std) (called under no_grad)."""
        table = self.learnable_embedding.weight
        count = len(range(*rows.indices(table.shape[0])))
        table[rows] = std * torch.randn(count, table.shape[1], generator=generator).to(table)

    @torch.no_grad()
    def add_sincos_slot_positions(self) -> None:
        """Add a 2-D sine-cosine grid to the slots' positional embeddings (the class row is left alone).

        Scaled to the embeddings' mean row norm, so the learned positions keep their say; the grid gives
        attention a ready notion of which slots are neighbours.
        """
        positions = self.learnable_embedding_positional_embedding
        grid = sincos_grid(self.grid_size, positions.shape[1]).to(positions)
        scale = positions[1:].norm(dim=1).mean() / grid.norm(dim=1).mean()
        positions[1:] += scale * grid

    def hidden_states(self, proxy_ids: torch.Tensor, z_q: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Final-layer features (B, S, W) of the proxy slots, or (B, M, W) of ``slots`` (B, M) only.

        With ``slots`` the last block computes just those output rows (all positions still serve as
        keys/values), which is what iterative decoding needs when only masked slots are read.
        """
        b = proxy_ids.shape[0]
        cond = self.decoder_embed(z_q.reshape(b, z_q.shape[1], -1).transpose(1, 2)) + self.condition_positional_embedding
        x = self.learnable_embedding(proxy_ids)  # (B, S, W)
        x = torch.cat([self.class_embedding.expand(b, -1, -1).to(x.dtype), x], dim=1)
        x = x + self.learnable_embedding_positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([x, cond.to(x.dtype)], dim=1))
        for block in self.transformer[:-1]:
            x = block(x)
        # The last block only computes the rows that are read (position 0 is the class token).
        rows = slice(1, 1 + self.num_slots) if slots is None else slots + 1
        return self.ln_post(self.transformer[-1](x, rows=rows))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The 1x1-conv head as matmuls on (..., W) -> (..., V); identical to the conv on a grid."""
        fc1, fc2 = self.ffn[0], self.ffn[2]
        h = linear(hidden, fc1.weight.flatten(1), fc1.bias, "tanh")
        return linear(h, fc2.weight.flatten(1), fc2.bias)

    def forward(self, proxy_ids: torch.Tensor, z_q: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, V) for proxy ids (B, S) (mask id allowed) given z_q (B, C, 1, N).

        ``slots`` (B, M) int64 restricts the output to those slots: logits (B, M, V), row j of
        batch b belonging to slot ``slots[b, j]``.
        """
        return self.head(self.hidden_states(proxy_ids, z_q, slots))
