"""How much the latent tokens and the decode trajectory tell a trained decoder about the teacher's codes.

One summary per model on held-out images, for the model card's goals: the cross-entropy of the teacher's
codes given the tokens alone (one all-masked pass) against the codes' marginal entropy (what a decoder
that ignored the tokens could reach), the information gained at each decode step on the model's own
trajectory, and how many leave-one-out MI intervals lie above zero with the Information screen's
default settings. Everything in bits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .estimators import entropy
from .model_mi import (REVEAL_FRACTIONS, MIInputs, RevealCurve, _ce_bits, bootstrap_mean_ci, leave_one_out_mi,
                       pick_positions, sftok_mi_inputs, trajectory_information)


@dataclass(frozen=True)
class ScreenDefaults:
    """The Information screen's default settings (its controls start from these)."""

    images: int = 8
    slots: int = 32
    steps: int = 8
    temperature: float = 1.0
    seed: int = 0
    block_slots: int = 4


@dataclass(frozen=True)
class CodeInformation:
    images: int
    ce_given_tokens_bits: float  # mean over slots and images, one all-masked pass
    ce_ci: tuple[float, float]  # bootstrap over images
    marginal_entropy_bits: float  # pooled code distribution over these images (Miller-Madow)
    tokens_bits_per_slot: float  # marginal - CE: what the tokens tell about a code, per slot
    tokens_bits_per_image: float
    gain_bits_per_image: list[float]  # information gain per decode step (screen defaults), step 1 first
    gain_bits_per_image_all: list[float]  # the same on all ``images``, as groups of ``screen.images``
    groups_all_positive: int  # groups of ``screen.images`` images whose gain is positive at every step after the first
    groups: int
    loo_slots_above_zero: int  # at the screen defaults: slots whose interval lies above zero
    loo_slots: int
    loo_mean_bits: float
    loo_mean_ci: tuple[float, float]
    reveal_fractions: tuple[float, ...] = ()
    ce_hidden_by_reveal_bits: tuple[float, ...] = ()  # CE of the still-hidden codes, per revealed fraction
    # The same gains with the teacher's codes at the committed slots (the paper's I(m_masked; m_revealed | Z_q)).
    teacher_gain_bits_per_image: list[float] = field(default_factory=list)
    teacher_gain_bits_per_image_all: list[float] = field(default_factory=list)
    teacher_groups_all_positive: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class TokensTell:
    """What the tokens alone tell a decoder about the teacher's codes, accumulated batch by batch: the codes'
    cross-entropy from one all-masked pass against their marginal entropy (pooled over slots, Miller-Madow)."""

    def __init__(self) -> None:
        self._ce_rows: list[torch.Tensor] = []
        self._codes: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, inputs: MIInputs) -> "TokensTell":
        """An SFTok batch: its decoder's one all-masked pass."""
        return self.add(inputs.decoder(torch.full_like(inputs.targets, inputs.mask_id), inputs.z_q), inputs.targets)

    @torch.no_grad()
    def add(self, logits: torch.Tensor, codes: torch.Tensor) -> "TokensTell":
        """A batch of (B, S, V) logits over the teacher's codes predicted from the tokens alone and the (B, S) codes
        themselves: any one-pass predictor (TiTok's ``proxy_logits``) is measured as SFTok's all-masked pass is."""
        self._ce_rows.append(_ce_bits(logits, codes).mean(dim=1).double())
        self._codes.append(codes)
        return self

    def per_image_ce(self) -> np.ndarray:
        """Mean cross-entropy (bits/slot) of each image's codes given its tokens."""
        return torch.cat(self._ce_rows).numpy()

    def marginal_bits(self) -> float:
        return float(entropy(torch.cat(self._codes).flatten().cpu().numpy(), "miller_madow"))

    def bits_per_slot(self) -> float:
        """Marginal entropy minus cross-entropy: what the tokens tell about one code."""
        return self.marginal_bits() - float(self.per_image_ce().mean())


def tokens_tell(model: torch.nn.Module, teacher: torch.nn.Module, images: torch.Tensor,
                batch_size: int = 64) -> TokensTell:
    """:class:`TokensTell` of ``model`` on ``images`` (each image's tokens assigned alone)."""
    tell = TokensTell()
    for first in range(0, images.shape[0], batch_size):
        tell.update(sftok_mi_inputs(model, images[first:first + batch_size], teacher))
    return tell


@torch.no_grad()
def code_information(model: torch.nn.Module, teacher: torch.nn.Module, images: torch.Tensor,
                     screen: ScreenDefaults = ScreenDefaults(), batch_size: int = 64) -> CodeInformation:
    """Measure an SFTok model against its teacher's codes on ``images`` (held out; at least ``screen.images``)."""
    if images.shape[0] < screen.images:
        raise ValueError(f"images: need at least {screen.images}, got {images.shape[0]}")
    tell = TokensTell()
    reveal = RevealCurve(REVEAL_FRACTIONS, screen.seed)
    for first in range(0, images.shape[0], batch_size):
        inputs = sftok_mi_inputs(model, images[first:first + batch_size], teacher)
        tell.update(inputs)
        reveal.update(inputs.decoder, inputs.z_q, inputs.targets, inputs.mask_id)
    per_image_ce = tell.per_image_ce()
    ce = float(per_image_ce.mean())
    low, high = bootstrap_mean_ci(per_image_ce[:, None], seed=screen.seed)
    marginal = tell.marginal_bits()
    # The screen measures one group of images (the first); how stable is the sign of its gains from group to group?
    group_gains, teacher_gains, head = [], [], None
    for first in range(0, images.shape[0] - screen.images + 1, screen.images):
        inputs = sftok_mi_inputs(model, images[first:first + screen.images], teacher)
        traj = trajectory_information(inputs.decoder, inputs.z_q, inputs.targets, inputs.mask_id, screen.steps,
                                      screen.temperature, screen.seed, max_block_slots=1)  # block TC is not read
        group_gains.append([r.info_gain_bits_per_image for r in traj.rows])
        teacher_gains.append([r.teacher_gain_bits_per_image for r in traj.rows])
        head = inputs if head is None else head
    def over_groups(gains: list[list[float]]) -> tuple[list[float], int]:
        """Mean gain per step over the groups, and how many groups gain at every step after the first."""
        return ([sum(g[k] for g in gains) / len(gains) for k in range(screen.steps)],
                sum(all(v > 0 for v in g[1:]) for g in gains))

    gain_all, positive_groups = over_groups(group_gains)
    teacher_all, teacher_positive = over_groups(teacher_gains)
    positions = pick_positions(head.targets.shape[1], screen.slots, screen.seed)
    loo = leave_one_out_mi(head.decoder, head.targets, head.z_q, head.mask_id, positions, seed=screen.seed)
    slots = head.targets.shape[1]
    return CodeInformation(
        images=int(images.shape[0]), ce_given_tokens_bits=ce, ce_ci=(float(low[0]), float(high[0])),
        marginal_entropy_bits=float(marginal), tokens_bits_per_slot=float(marginal - ce),
        tokens_bits_per_image=float((marginal - ce) * slots),
        gain_bits_per_image=group_gains[0], gain_bits_per_image_all=gain_all,
        groups_all_positive=positive_groups, groups=len(group_gains),
        loo_slots_above_zero=loo.slots_above_zero, loo_slots=int(positions.size),
        loo_mean_bits=float(loo.mean_bits), loo_mean_ci=(float(loo.mean_ci[0]), float(loo.mean_ci[1])),
        reveal_fractions=REVEAL_FRACTIONS, ce_hidden_by_reveal_bits=reveal.result(),
        teacher_gain_bits_per_image=teacher_gains[0], teacher_gain_bits_per_image_all=teacher_all,
        teacher_groups_all_positive=teacher_positive)


__all__ = ["CodeInformation", "REVEAL_FRACTIONS", "ScreenDefaults", "TokensTell", "code_information", "tokens_tell"]
