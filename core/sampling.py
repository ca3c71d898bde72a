"""One MaskGIT-style parallel decoding step, shared by the SFTok decoder and the class generator.

Follows the official order of random draws (reference section 3.2) so that a seed reproduces a
result: a Gumbel draw of shape (B, S, V) for candidates, then one of shape (B, S) for confidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .schedules import arccos_mask_ratio, num_masked_after_step


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(shape, device=device, generator=generator)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


@dataclass
class StepOutput:
    candidates: torch.Tensor  # (B, S) sampled id per slot (committed slots keep their id)
    ids_out: torch.Tensor  # (B, S) ids after this step, mask id where still masked
    newly_committed: torch.Tensor  # (B, S) bool
    confidence: torch.Tensor  # (B, S) probability of the candidate under softmax(logits)
    entropy: torch.Tensor  # (B, S) predictive entropy in bits
    temperature: float
    target_mask_ratio: float
    num_masked_after: int


def masked_decode_step(logits: torch.Tensor, ids_in: torch.Tensor, mask_id: int, step: int, num_steps: int,
                       randomize_temperature: float, generator: torch.Generator | None = None) -> StepOutput:
    """Commit the most confident predictions of one pass; logits (B, S, V), ids_in (B, S)."""
    r = (step + 1) / num_steps
    tau = randomize_temperature * (1.0 - r)
    is_mask = ids_in == mask_id
    logits = logits.float()
    noise = gumbel_noise(logits.shape, logits.device, generator)
    candidates = torch.argmax(logits + tau * noise, dim=-1)
    score = torch.gather(logits, -1, candidates.unsqueeze(-1)).squeeze(-1)  # raw logit, as upstream
    candidates = torch.where(is_mask, candidates, ids_in)
    score = torch.where(is_mask, score, torch.full_like(score, float("inf")))
    log_probs = torch.log_softmax(logits, dim=-1)
    confidence = torch.gather(log_probs, -1, candidates.unsqueeze(-1)).squeeze(-1).exp()
    entropy = -(log_probs.exp() * log_probs).sum(-1) / torch.log(torch.tensor(2.0))
    last = step == num_steps - 1
    if last:
        ids_out, num_left = candidates, 0
    else:
        num_left = num_masked_after_step(step, num_steps, ids_in.shape[1], int(is_mask[0].sum()))
        conf = score + tau * gumbel_noise(score.shape, score.device, generator)
        cutoff = torch.sort(conf, dim=-1).values[:, num_left - 1:num_left]
        ids_out = torch.where(conf <= cutoff, torch.full_like(candidates, mask_id), candidates)
    return StepOutput(
        candidates=candidates, ids_out=ids_out, newly_committed=is_mask & (ids_out != mask_id),
        confidence=confidence, entropy=entropy, temperature=tau,
        target_mask_ratio=float(arccos_mask_ratio(r)), num_masked_after=num_left,
    )
