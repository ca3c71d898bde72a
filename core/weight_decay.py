"""Which parameters AdamW must not decay: the official SFTok rule, for every model of this package.

1-D tensors (biases, norm scales) and anything named like a norm, a bias, an embedding or a learned
token are excluded; decaying them pulls norms and embeddings towards zero for no regularising gain.
"""
from __future__ import annotations

from torch import nn

NO_DECAY_WORDS = ("ln", "bias", "latent_tokens", "mask_token", "embedding", "norm", "gamma", "embed", "LayerNorm")


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Names of ``module``'s parameters that get no weight decay."""
    return {name for name, p in module.named_parameters()
            if p.ndim < 2 or any(word in name for word in NO_DECAY_WORDS)}
