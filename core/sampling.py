"""One MaskGIT-style parallel decoding step, shared by the SFTok decoder and the class generator.

Follows the official order of random draws (reference section 3.2) so that a seed reproduces a
result: a Gumbel draw of shape (B, S, V) for candidates, then one of shape (B, S) for confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

from .schedules import arccos_mask_ratio, num_masked_after_step


Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def uniform(shape: torch.Size | tuple[int, ...], device: torch.device, generator: Generators) -> torch.Tensor:
    """U[0, 1) draws of ``shape``. A sequence of generators (one per row of the leading dimension) draws row b
    from generator b alone: a sample's randomness then does not depend on which samples share its batch, and
    equals what a batch of one with that generator draws (evaluations seed every sample by its own index)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, device=device, generator=generator)
    if len(generator) != shape[0]:
        raise ValueError(f"generator: {len(generator)} per-row generators for a batch of {shape[0]}")
    return torch.stack([torch.rand(tuple(shape[1:]), device=device, generator=g) for g in generator])


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device, generator: Generators,
                 last_two_swapped: bool = False) -> torch.Tensor:
    """Standard Gumbel noise -log(-log(u)) with both logs clamped at 1e-20, as upstream.

    ``last_two_swapped`` draws the uniforms as (..., b, a) and returns the transposed view (..., a, b):
    the same values land where upstream's ``zeros_like(t).uniform_()`` puts them when ``t`` is a
    transposed view (which the official SFTok decoder's logits are).
    """
    if last_two_swapped:
        swapped = (*shape[:-2], shape[-1], shape[-2])
        u = uniform(swapped, device, generator).transpose(-1, -2)
    else:
        u = uniform(shape, device, generator)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


@dataclass
class StepOutput:
    candidates: torch.Tensor  # (B, S) sampled id per slot (committed slots keep their id)
    ids_out: torch.Tensor  # (B, S) ids after this step, mask id where still masked
    newly_committed: torch.Tensor  # (B, S) bool
    confidence: torch.Tensor | None  # (B, S) probability of the candidate under softmax(logits); None if stats=False
    entropy: torch.Tensor | None  # (B, S) predictive entropy in bits; None if stats=False
    temperature: float
    target_mask_ratio: float
    num_masked_after: int


def masked_decode_step(logits: torch.Tensor, ids_in: torch.Tensor, mask_id: int, step: int, num_steps: int,
                       randomize_temperature: float, generator: Generators = None,
                       codes_major_noise: bool = False, stats: bool = True) -> StepOutput:
    """Commit the most confident predictions of one pass; logits (B, S, V), ids_in (B, S).

    ``codes_major_noise``: draw the candidate noise in (B, V, S) memory order. The official SFTok
    decoder returns its logits as a transposed view of a (B, V, S) conv output, and upstream draws
    the noise with ``zeros_like(logits)``, which keeps that layout; set it there to reproduce
    seeded results. The class generator's logits are plain (B, S, V) (leave it False).
    ``stats=False`` skips the per-slot confidence/entropy (left None), which only inspection needs.
    ``generator``: one generator, or one per row (see :func:`uniform`).
    """
    r = (step + 1) / num_steps
    tau = randomize_temperature * (1.0 - r)
    is_mask = ids_in == mask_id
    logits = logits.float()
    noise = gumbel_noise(logits.shape, logits.device, generator, last_two_swapped=codes_major_noise)
    candidates = torch.argmax(logits + tau * noise, dim=-1)
    score = torch.gather(logits, -1, candidates.unsqueeze(-1)).squeeze(-1)  # raw logit, as upstream
    candidates = torch.where(is_mask, candidates, ids_in)
    score = torch.where(is_mask, score, torch.full_like(score, float("inf")))
    confidence = entropy = None
    if stats:
        log_probs = torch.log_softmax(logits, dim=-1)
        confidence = torch.gather(log_probs, -1, candidates.unsqueeze(-1)).squeeze(-1).exp()
        entropy = -(log_probs.exp() * log_probs).sum(-1) / torch.log(torch.tensor(2.0))
    # The confidence noise is drawn at every step, the last included (where it is unused), exactly as
    # upstream does, so a seeded RNG is left in the same state and later draws match too.
    conf = score + tau * gumbel_noise(score.shape, score.device, generator)
    if step == num_steps - 1:
        ids_out, num_left = candidates, 0
    else:
        num_left = num_masked_after_step(step, num_steps, ids_in.shape[1], int(is_mask[0].sum()))
        cutoff = torch.sort(conf, dim=-1).values[:, num_left - 1:num_left]
        ids_out = torch.where(conf <= cutoff, torch.full_like(candidates, mask_id), candidates)
    return StepOutput(
        candidates=candidates, ids_out=ids_out, newly_committed=is_mask & (ids_out != mask_id),
        confidence=confidence, entropy=entropy, temperature=tau,
        target_mask_ratio=float(arccos_mask_ratio(r)), num_masked_after=num_left,
    )
