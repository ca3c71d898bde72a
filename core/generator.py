"""Class-conditional MaskGIT generator over SFTok's latent tokens (official ``ImageBert`` layout).

A BERT encoder (post-LayerNorm, key names as HF ``BertModel``) reads [class token, N image tokens]
and predicts the N token ids. Class token = K + 1 + class; the dropped-class token = K + 1 + C;
image mask id = K. Sampling is the same parallel decoding step as the tokenizer's decoder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, _require
from .sampling import Generators, StepOutput, masked_decode_step, uniform


@dataclass(frozen=True)
class GeneratorConfig:
    codebook_size: int = 8192
    num_tokens: int = 64
    num_classes: int = 1000
    hidden_size: int = 768
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 3072
    dropout: float = 0.1
    class_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("codebook_size", "num_tokens", "num_classes", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, f"generator.{name}", f"must be a positive integer, got {value!r}")
        _require(self.hidden_size % self.num_heads == 0, "generator.num_heads", "must divide hidden_size")
        _require(0 <= self.dropout < 1 and 0 <= self.class_dropout <= 1, "generator.dropout", "must be in [0, 1)")

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 2

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def null_class_id(self) -> int:
        return self.codebook_size + 1 + self.num_classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GeneratorConfig":
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"generator: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)


class _SelfAttention(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, w = x.shape
        q, k, v = (proj(x).view(b, l, self.heads, -1).transpose(1, 2) for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, l, w)


class _DenseNorm(nn.Module):
    """dense -> dropout -> LayerNorm(residual + .): BERT's output sub-layers."""

    def __init__(self, in_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, out_size)
        self.LayerNorm = nn.LayerNorm(out_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))


class _Attention(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.add_module("self", _SelfAttention(cfg))
        self.output = _DenseNorm(cfg.hidden_size, cfg.hidden_size, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _DenseNorm(cfg.intermediate_size, cfg.hidden_size, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class _Embeddings(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.num_tokens + 1, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(2, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class _Encoder(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_layers))


class _Body(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.codebook_size)


class MaskGITGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, GeneratorConfig) else GeneratorConfig.from_dict(config or {})
        self.config = cfg
        self.model = _Body(cfg)
        self.apply(self._init_bert)
        self.model.lm_head.reset_parameters()  # upstream re-creates the head after BERT's init

    @staticmethod
    def _init_bert(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def class_tokens(self, class_ids: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        tokens = class_ids.long() + self.config.codebook_size + 1
        if drop is not None:
            tokens = torch.where(drop, torch.full_like(tokens, self.config.null_class_id), tokens)
        return tokens

    def forward(self, token_ids: torch.Tensor, class_ids: torch.Tensor, drop_class: torch.Tensor | None = None) -> torch.Tensor:
        """token_ids (B, N) with mask id K where hidden; class_ids (B,) -> logits (B, N, K)."""
        seq = torch.cat([self.class_tokens(class_ids, drop_class)[:, None], token_ids.long()], dim=1)
        x = self.model.embeddings(seq)
        for layer in self.model.encoder.layer:
            x = layer(x)
        return self.model.lm_head(x[:, 1:])

    @torch.no_grad()
    def generate(self, class_ids: torch.Tensor, num_steps: int = 8, guidance_scale: float = 4.5,
                 temperature: float = 1.0, generator: Generators = None) -> tuple[torch.Tensor, list[StepOutput]]:
        """Sample token ids (B, N) for classes (B,); logits = cond + s * (cond - uncond) as upstream.

        ``generator``: one for the batch, or one per sample (each sample then draws as a batch of one would).
        """
        if not 1 <= num_steps <= 32:
            raise ValueError(f"num_steps: must be in 1..32, got {num_steps}")
        cfg = self.config
        if int(class_ids.min()) < 0 or int(class_ids.max()) >= cfg.num_classes:
            raise ValueError(f"class ids must lie in [0, {cfg.num_classes})")
        ids = torch.full((class_ids.shape[0], cfg.num_tokens), cfg.mask_id, dtype=torch.long, device=class_ids.device)

        def skip_class_dropout_draw() -> None:
            # Upstream's forward draws a (B,) class-dropout mask even at sampling time (probability 0
            # or 1 there); drawing and discarding it keeps a seeded stream in step with upstream.
            uniform((class_ids.shape[0],), class_ids.device, generator)

        steps = []
        for step in range(num_steps):
            skip_class_dropout_draw()
            logits = self(ids, class_ids)
            if guidance_scale != 0:
                skip_class_dropout_draw()
                uncond = self(ids, class_ids, drop_class=torch.ones_like(class_ids, dtype=torch.bool))
                logits = logits + guidance_scale * (logits - uncond)
            out = masked_decode_step(logits, ids, cfg.mask_id, step, num_steps, temperature, generator)
            steps.append(out)
            ids = out.ids_out
        return ids, steps


GENERATOR_PRESETS = {
    "tiny": GeneratorConfig(codebook_size=1024, num_classes=16, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512),
    "B": GeneratorConfig(),
}

