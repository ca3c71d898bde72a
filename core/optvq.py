"""OptVQ: L2-normalised codebook with optimal-transport (Sinkhorn) assignment, as SFTok uses it.

Assignment is Sinkhorn by default, also at inference, so token ids depend on which other vectors
share the call (the whole batch of B*N vectors is balanced jointly, as in official training).
``per_image=True`` balances each image's N vectors on their own, so an image's ids are a function of
that image alone: what analyses need (a measurement must not change with the number of images
measured). ``mode="nearest"`` is the other documented alternative: plain nearest codeword, not what
the official weights were trained with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sinkhorn_assign(vectors: torch.Tensor, codes: torch.Tensor, iters: int = 5, epsilon: float = 10.0) -> torch.Tensor:
    """Indices (n,) of the balanced assignment of vectors (n, D) to codes (K, D), official op order."""
    n, k = vectors.shape[0], codes.shape[0]
    dist = torch.cdist(vectors, codes, p=2)  # (n, K)
    dist = dist - dist.min()
    plan = torch.exp(-epsilon * dist).t()  # (K, n)
    plan = plan / (plan.sum() + 1e-8)
    for _ in range(iters):
        plan = plan / (plan.sum(dim=1, keepdim=True) + 1e-8) / k
        plan = plan / (plan.sum(dim=0, keepdim=True) + 1e-8) / n
    plan = plan * n
    return plan.argmax(dim=0)


def nearest_assign(vectors: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return torch.cdist(vectors, codes, p=2).argmin(dim=1)


class OptVQ(nn.Module):
    """Quantises z (B, C, 1, N) to codewords normalize(shared_linear(embedding)).

    State-dict keys follow the official module: ``embedding`` (1, K, C) as a bare parameter,
    ``shared_linear.{weight,bias}`` (identity/zero at init) and the int64 buffer ``index_offset``.
    """

    def __init__(self, codebook_size: int, token_size: int, commitment_cost: float = 0.25, mode: str = "sinkhorn") -> None:
        super().__init__()
        if mode not in ("sinkhorn", "nearest"):
            raise ValueError(f"quantizer_mode: {mode!r} is not one of ('sinkhorn', 'nearest')")
        self.codebook_size = codebook_size
        self.token_size = token_size
        self.commitment_cost = commitment_cost
        self.mode = mode
        self.embedding = nn.Parameter(torch.randn(1, codebook_size, token_size))
        self.shared_linear = nn.Linear(token_size, token_size)
        nn.init.eye_(self.shared_linear.weight)
        nn.init.zeros_(self.shared_linear.bias)
        self.register_buffer("index_offset", torch.zeros(1, dtype=torch.long))

    def codebook(self) -> torch.Tensor:
        """Effective codewords (K, C): L2-normalised shared_linear(embedding)."""
        return F.normalize(self.shared_linear(self.embedding.float()), dim=-1).view(-1, self.token_size)

    def assign(self, vectors: torch.Tensor, codes: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
        """Code index per vector; Sinkhorn balances each run of ``group_size`` vectors alone (None: all jointly)."""
        with torch.no_grad():
            if self.mode == "nearest":
                return nearest_assign(vectors, codes)
            if group_size is None:
                return sinkhorn_assign(vectors, codes)
            return torch.cat([sinkhorn_assign(group, codes) for group in vectors.split(group_size)])

    def forward(self, z: torch.Tensor, per_image: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, c, _, n = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_n = F.normalize(z.float().reshape(b, c, n).transpose(1, 2).reshape(-1, c), dim=-1)  # (B*N, C)
            codes = self.codebook()
            indices = self.assign(z_n.detach(), codes.detach(), n if per_image else None)
            quantized = codes[indices]
            commitment = self.commitment_cost * torch.mean((quantized.detach() - z_n) ** 2)
            codebook_loss = torch.mean((quantized - z_n.detach()) ** 2)
            z_q = z_n + (quantized - z_n).detach()
        z_q = z_q.view(b, n, c).transpose(1, 2).reshape(b, c, 1, n)
        info = {
            "quantizer_loss": commitment + codebook_loss,
            "commitment_loss": commitment,
            "codebook_loss": codebook_loss,
            "min_encoding_indices": indices.view(b, 1, n),
        }
        return z_q, info

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, N) or (B, 1, N) -> z_q (B, C, 1, N)."""
        if indices.dim() == 3:
            indices = indices.squeeze(1)
        b, n = indices.shape
        flat = indices.reshape(-1) + self.index_offset
        vectors = self.codebook()[flat]
        return vectors.view(b, n, self.token_size).transpose(1, 2).reshape(b, self.token_size, 1, n)
