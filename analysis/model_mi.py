"""The paper's information argument, measured with a trained decoder.

SFTok argues that multi-step decoding lowers the minimum loss by the conditional mutual
information I(m_i; m_rest | Z_q) between proxy codes given the latent tokens: a one-step decoder
must predict each code from Z_q alone, a multi-step one also sees codes already revealed.
With a decoder q that predicts codes from a partially masked grid, the drop in cross-entropy

    CE(m_i | Z_q, all masked) - CE(m_i | Z_q, all other codes given)

equals I(m_i; m_rest | Z_q) when q is the true conditional; for a real model it is the difference
of two variational estimates (not a bound), measured on held-out images. Bootstrap intervals over
images capture sampling noise only. All functions take any decoder callable with the signature of
``core.decoder.MultiStepDecoder.forward``: ``decoder(proxy_ids (B, S) long, z_q) -> logits (B, S, V)``
with ``mask_id`` marking masked slots; ``z_q`` is any tensor whose first dimension is the batch.
Quantities are in bits.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.sampling import masked_decode_step
from core.schedules import num_masked_after_step
from core.sftok import DecodeStep

from .seeding import derived_generator, derived_seed

Decoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LN2 = math.log(2.0)


# -- shared machinery ------------------------------------------------------------------------------
def _ce_bits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in bits of ``targets`` under ``logits`` (..., V)."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    return (flat / LN2).view(targets.shape)


def _kl_bits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in bits over the last dimension."""
    log_p, log_q = F.log_softmax(p_logits.float(), -1), F.log_softmax(q_logits.float(), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) / LN2


def _check_logits(logits: torch.Tensor, rows: int, slots: int) -> None:
    if logits.dim() != 3 or logits.shape[:2] != (rows, slots):
        raise ValueError(f"decoder: expected logits of shape ({rows}, {slots}, V), got {tuple(logits.shape)}")


def accepts_slots(decoder: Decoder) -> bool:
    """Whether the decoder can compute only some output slots (``core.decoder.MultiStepDecoder`` can)."""
    target = decoder.forward if isinstance(decoder, torch.nn.Module) else decoder  # Module.__call__ is (*args)
    try:
        return "slots" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def query_rows(decoder: Decoder, inputs: torch.Tensor, z_q: torch.Tensor, image: torch.Tensor, query: torch.Tensor,
               targets: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """CE (bits) of ``targets[r]`` at slot ``query[r]`` when the decoder sees ``inputs[r]`` and ``z_q[image[r]]``.

    Rows are run ``batch_size`` at a time; this is where the cost of every estimator goes. A decoder
    taking ``slots`` computes only the queried slot in its last block and head.
    """
    out = torch.empty(inputs.shape[0], dtype=torch.float32)
    only_query = accepts_slots(decoder)
    for start in range(0, inputs.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        rows = inputs[sl].shape[0]
        if only_query:
            picked = decoder(inputs[sl], z_q[image[sl]], slots=query[sl].unsqueeze(1))
            _check_logits(picked, rows, 1)
            picked = picked[:, 0]
        else:
            logits = decoder(inputs[sl], z_q[image[sl]])
            _check_logits(logits, rows, inputs.shape[1])
            picked = logits[torch.arange(rows, device=logits.device), query[sl]]
        out[sl] = _ce_bits(picked, targets[sl]).cpu()
    return out


def bootstrap_mean_ci(values: np.ndarray, num_bootstrap: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the mean over axis 0 (images), resampling images with replacement."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 2 or num_bootstrap < 1:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    rng = np.random.default_rng(seed)
    means = np.stack([values[rng.integers(0, n, n)].mean(axis=0) for _ in range(num_bootstrap)])
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1.0 - alpha, axis=0)


def _check_codes(codes: torch.Tensor, z_q: torch.Tensor, mask_id: int) -> torch.Tensor:
    if codes.dim() != 2 or codes.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"codes: expected (B, S) integer proxy codes, got {tuple(codes.shape)} {codes.dtype}")
    if z_q.shape[0] != codes.shape[0]:
        raise ValueError(f"z_q: batch {z_q.shape[0]} does not match codes batch {codes.shape[0]}")
    if (codes == mask_id).any():
        raise ValueError(f"codes: contain the mask id {mask_id}; targets must be real codes")
    return codes.long()


# -- leave-one-out MI per position -----------------------------------------------------------------
def pick_positions(num_slots: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct slots in increasing order, a seeded random subset unless all are asked for."""
    if count >= num_slots:
        return np.arange(num_slots)
    return np.sort(np.random.default_rng(seed).choice(num_slots, size=count, replace=False))


@dataclass(frozen=True)
class LeaveOneOutMI:
    """Per-position I(m_i; m_rest | Z_q) estimates with bootstrap intervals (bits)."""

    positions: np.ndarray  # (P,) slot indices
    bits: np.ndarray  # (P,) mean over images of CE_all - CE_loo
    ci_low: np.ndarray
    ci_high: np.ndarray
    ce_all_bits: np.ndarray  # (P,) CE with every slot masked
    ce_loo_bits: np.ndarray  # (P,) CE with only this slot masked
    per_image_bits: np.ndarray  # (B, P)
    mean_bits: float  # over positions
    mean_ci: tuple[float, float]
    num_images: int
    confidence: float

    @property
    def slots_above_zero(self) -> int:
        """Slots whose interval lies wholly above zero: the ones whose revealed neighbours clearly inform the decoder."""
        return int((self.ci_low > 0).sum())


@torch.no_grad()
def leave_one_out_mi(decoder: Decoder, codes: torch.Tensor, z_q: torch.Tensor, mask_id: int,
                     positions: Sequence[int] | None = None, batch_size: int = 128, num_bootstrap: int = 1000,
                     confidence: float = 0.95, seed: int = 0,
                     on_rows: Callable[[int, int], None] | None = None) -> LeaveOneOutMI:
    """CE of each true code with everything masked minus with only that slot masked, per position.

    One all-masked pass per image plus one pass per (image, position): B x P decoder rows, batched.
    ``on_rows(done, total)`` is told the (image, position) rows done after each chunk of images, so
    a caller can show progress and estimate the rest from the first chunk.
    """
    codes = _check_codes(codes, z_q, mask_id)
    b, s = codes.shape
    pos = torch.arange(s) if positions is None else torch.as_tensor(list(positions), dtype=torch.long)
    if pos.numel() == 0 or int(pos.min()) < 0 or int(pos.max()) >= s:
        raise ValueError(f"positions: must be non-empty slot indices in [0, {s})")
    device = codes.device
    all_masked = torch.full_like(codes, mask_id)
    logits = decoder(all_masked, z_q)
    _check_logits(logits, b, s)
    ce_all = _ce_bits(logits[:, pos.to(device)], codes[:, pos.to(device)]).cpu()  # (B, P)
    p = pos.numel()
    chunks = []
    group = max(1, batch_size // p)  # images per chunk, so the (image, position) rows stay bounded
    for first in range(0, b, group):
        image = torch.arange(first, min(b, first + group), device=device).repeat_interleave(p)
        query = pos.to(device).repeat(image.numel() // p)
        inputs = codes[image].clone()
        inputs[torch.arange(inputs.shape[0], device=device), query] = mask_id
        chunks.append(query_rows(decoder, inputs, z_q, image, query, codes[image, query], batch_size))
        if on_rows is not None:
            on_rows(min(b, first + group) * p, b * p)
    ce_loo = torch.cat(chunks).view(b, p)
    per_image = (ce_all - ce_loo).double().numpy()
    low, high = bootstrap_mean_ci(per_image, num_bootstrap, confidence, seed)
    mlow, mhigh = bootstrap_mean_ci(per_image.mean(axis=1, keepdims=True), num_bootstrap, confidence, seed)
    return LeaveOneOutMI(
        positions=pos.numpy(), bits=per_image.mean(axis=0), ci_low=low, ci_high=high,
        ce_all_bits=ce_all.double().mean(0).numpy(), ce_loo_bits=ce_loo.double().mean(0).numpy(),
        per_image_bits=per_image, mean_bits=float(per_image.mean()), mean_ci=(float(mlow[0]), float(mhigh[0])),
        num_images=b, confidence=confidence)


# -- the real decode trajectory --------------------------------------------------------------------
@dataclass(frozen=True)
class TrajectoryStep:
    """What one decoding pass saw and committed (batch tensors)."""

    step: int
    ids_in: torch.Tensor  # (B, S), mask_id where masked
    ids_out: torch.Tensor
    newly_committed: torch.Tensor  # (B, S) bool
    logits: torch.Tensor  # (B, S, V)
    teacher_logits: torch.Tensor | None = None  # the same pass with the teacher's codes at the revealed slots


@torch.no_grad()
def decode_trajectory(decoder: Decoder, z_q: torch.Tensor, num_slots: int, mask_id: int, num_steps: int = 8,
                      temperature: float = 1.0, seed: int = 0) -> list[TrajectoryStep]:
    """The official MaskGIT-style decode (``core.sampling.masked_decode_step``), seeded, for any decoder.

    Random draws follow ``SFTok.decode_steps`` (code-major candidate noise, as the official decoder),
    so with an SFTok decoder the trajectory is the one the model itself samples under that seed.
    """
    device = z_q.device
    generator = derived_generator(device, seed, num_steps)
    ids = torch.full((z_q.shape[0], num_slots), mask_id, dtype=torch.long, device=device)
    steps = []
    for s in range(num_steps):
        logits = decoder(ids, z_q)
        _check_logits(logits, ids.shape[0], num_slots)
        out = masked_decode_step(logits, ids, mask_id, s, num_steps, temperature, generator, codes_major_noise=True)
        steps.append(TrajectoryStep(s, ids, out.ids_out, out.newly_committed, logits))
        ids = out.ids_out
    return steps


@dataclass(frozen=True)
class TrajectoryRow:
    """Information gained at one decode step (bits). Targets are the true (teacher) codes."""

    step: int
    mask_ratio_in: float
    committed: float  # mean slots committed at this step
    ce_context_free_bits: float  # mean CE of still-masked targets with every slot masked
    ce_context_bits: float  # ... given the codes revealed so far on the real trajectory
    info_gain_bits_per_slot: float
    info_gain_bits_per_image: float  # summed over the still-masked slots
    ce_teacher_context_bits: float  # ... given the teacher's codes at the slots revealed so far (same mask)
    teacher_gain_bits_per_image: float  # ce_context_free - ce_teacher_context, summed over the still-masked slots
    block_tc_bits: float  # total correlation of this step's parallel block (per image)
    block_tc_sem: float
    block_slots: float  # mean slots in the chain (<= committed when capped)


@dataclass(frozen=True)
class TrajectoryInformation:
    rows: tuple[TrajectoryRow, ...]
    num_steps: int
    temperature: float
    num_images: int


def teacher_forced_logits(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor,
                          step: TrajectoryStep | DecodeStep, mask_id: int) -> torch.Tensor:
    """The decoder's logits when the slots this step saw revealed hold the teacher's codes instead of its own.

    Same mask as the real trajectory, so the difference to ``step.logits`` is only what the revealed codes say.
    Taken from the step when :func:`with_teacher_logits` has filled it in (``SFTok.decode_steps`` records
    carry none)."""
    if getattr(step, "teacher_logits", None) is not None:
        return step.teacher_logits
    masked = step.ids_in == mask_id
    if masked.all():
        return step.logits
    return decoder(torch.where(masked, step.ids_in, targets), z_q)


def with_teacher_logits(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor,
                        trajectory: list[TrajectoryStep], mask_id: int) -> list[TrajectoryStep]:
    """The trajectory with each step's teacher-forced pass run once, for every measure that reads it."""
    return [replace(step, teacher_logits=teacher_forced_logits(decoder, z_q, targets, step, mask_id))
            for step in trajectory]


def _block_tc(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, step: TrajectoryStep,
              max_slots: int | None, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Chain-rule TC of the targets on this step's newly committed slots, per image, and the slot counts.

    TC(block | ctx) = sum_k [CE(m_k | ctx) - CE(m_k | ctx, m_<k)] over the block in a random order;
    the context is what the decoder really saw (``ids_in``), the block holds the true codes.
    """
    b = targets.shape[0]
    device = targets.device
    gen = torch.Generator().manual_seed(derived_seed(seed, step.step, 17))
    inputs, image, query, marginal_ce, owner = [], [], [], [], []
    sizes = np.zeros(b)
    for i in range(b):
        block = torch.nonzero(step.newly_committed[i]).flatten().cpu()
        block = block[torch.randperm(block.numel(), generator=gen)]
        if max_slots is not None:
            block = block[:max_slots]
        block = block.to(device)
        sizes[i] = block.numel()
        for k in range(1, block.numel()):
            row = step.ids_in[i].clone()
            row[block[:k]] = targets[i, block[:k]]
            inputs.append(row)
            image.append(i)
            query.append(int(block[k]))
            owner.append(i)
        if block.numel() > 1:
            marginal_ce.append(_ce_bits(step.logits[i, block[1:]], targets[i, block[1:]]).cpu())
    tc = np.zeros(b)
    if inputs:
        rows = torch.stack(inputs)
        img = torch.tensor(image, device=device)
        qry = torch.tensor(query, device=device)
        chain = query_rows(decoder, rows, z_q, img, qry, targets[img, qry], batch_size)
        np.add.at(tc, np.asarray(owner), (torch.cat(marginal_ce) - chain).double().numpy())
    return tc, sizes


@torch.no_grad()
def trajectory_information(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, mask_id: int,
                           num_steps: int = 8, temperature: float = 1.0, seed: int = 0,
                           trajectory: list[TrajectoryStep] | None = None, max_block_slots: int | None = None,
                           batch_size: int = 128) -> TrajectoryInformation:
    """Per step: how much the revealed codes lower the CE of the remaining true codes, and the
    total correlation of the block the step commits in parallel (what parallel sampling ignores).

    The gain is measured twice. With the model's own committed codes (the real trajectory) it cannot be
    positive on average for a decoder consistent with itself that samples those codes from its own joint
    (strictly so for plain sampling; MaskGIT's annealed temperature and confidence order depart from it): its
    own samples say nothing about the true codes beyond the tokens, and by Jensen's inequality
    E[-log q(m | Z, own)] >= -log E[q(m | Z, own)] = -log q(m | Z). With the
    teacher's codes at the same committed slots it estimates I(m_masked; m_revealed | Z_q), the information
    the paper's argument for multi-step decoding rests on."""
    targets = _check_codes(targets, z_q, mask_id)
    b, s = targets.shape
    trajectory = trajectory or decode_trajectory(decoder, z_q, s, mask_id, num_steps, temperature, seed)
    ce_free = _ce_bits(trajectory[0].logits, targets)  # step 0 saw every slot masked
    rows = []
    for step in trajectory:
        masked = step.ids_in == mask_id
        ce_ctx = _ce_bits(step.logits, targets)
        n_masked = masked.sum().item()
        free = float(ce_free[masked].sum() / n_masked)
        ctx = float(ce_ctx[masked].sum() / n_masked)
        gain_per_image = float(((ce_free - ce_ctx) * masked).sum() / b)
        ce_tf = _ce_bits(teacher_forced_logits(decoder, z_q, targets, step, mask_id), targets)
        teacher_gain = float(((ce_free - ce_tf) * masked).sum() / b)
        tc, sizes = _block_tc(decoder, z_q, targets, step, max_block_slots, seed, batch_size)
        sem = float(tc.std(ddof=1) / math.sqrt(b)) if b > 1 else float("nan")
        rows.append(TrajectoryRow(
            step=step.step, mask_ratio_in=float(masked.float().mean()), committed=float(step.newly_committed.sum() / b),
            ce_context_free_bits=free, ce_context_bits=ctx, info_gain_bits_per_slot=free - ctx,
            info_gain_bits_per_image=gain_per_image, ce_teacher_context_bits=float(ce_tf[masked].sum() / n_masked),
            teacher_gain_bits_per_image=teacher_gain, block_tc_bits=float(tc.mean()), block_tc_sem=sem,
            block_slots=float(sizes.mean())))
    return TrajectoryInformation(tuple(rows), len(trajectory), float(temperature), b)


# -- reveal curve: does the decoder read revealed codes? -------------------------------------------
REVEAL_FRACTIONS = (0.0, 0.5, 0.9)


@torch.no_grad()
def hidden_ce_bits(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, mask_id: int, fraction: float,
                   generator: torch.Generator) -> torch.Tensor:
    """CE (bits) of every still-hidden target code, 1-D, when a random ``fraction`` of the codes is revealed.

    The direct test of whether a decoder reads revealed codes: if it does, these fall as ``fraction`` grows.
    """
    targets = _check_codes(targets, z_q, mask_id)
    revealed = (torch.rand(targets.shape, generator=generator) < fraction).to(targets.device)
    logits = decoder(torch.where(revealed, targets, torch.full_like(targets, mask_id)), z_q)
    return _ce_bits(logits, targets)[~revealed]


class RevealCurve:
    """Mean CE (bits/slot) of the hidden codes at each revealed fraction, accumulated batch by batch.

    One random stream for the whole run, so splitting the images into batches draws the same reveals.
    """

    def __init__(self, fractions: tuple[float, ...] = REVEAL_FRACTIONS, seed: int = 0) -> None:
        self.fractions = fractions
        self.generator = torch.Generator().manual_seed(seed)
        self.sums = [0.0] * len(fractions)
        self.counts = [0] * len(fractions)

    def update(self, decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, mask_id: int) -> "RevealCurve":
        for k, fraction in enumerate(self.fractions):
            hidden = hidden_ce_bits(decoder, z_q, targets, mask_id, fraction, self.generator)
            self.sums[k] += float(hidden.double().sum())
            self.counts[k] += int(hidden.numel())
        return self

    def result(self) -> tuple[float, ...]:
        return tuple(s / max(c, 1) for s, c in zip(self.sums, self.counts))


def reveal_curve(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, mask_id: int,
                 fractions: tuple[float, ...] = REVEAL_FRACTIONS, seed: int = 0) -> tuple[float, ...]:
    """:class:`RevealCurve` of one batch."""
    return RevealCurve(fractions, seed).update(decoder, z_q, targets, mask_id).result()


# -- self-forcing gap ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelfForcingRow:
    step: int
    kl_bits: float  # mean over still-masked slots of KL(p(. | teacher codes) || p(. | own codes))
    revealed_accuracy: float  # fraction of revealed context slots whose own code equals the teacher's (NaN at step 0)
    committed_accuracy: float  # fraction of this step's newly committed codes equal to the teacher's
    ce_own_bits: float  # CE of the true codes at still-masked slots, own context
    ce_teacher_bits: float  # ... teacher-forced context


@dataclass(frozen=True)
class SelfForcingGap:
    rows: tuple[SelfForcingRow, ...]
    num_steps: int
    temperature: float
    num_images: int

    @property
    def mean_kl_bits(self) -> float:
        return float(np.mean([r.kl_bits for r in self.rows[1:]])) if len(self.rows) > 1 else 0.0


@torch.no_grad()
def self_forcing_gap(decoder: Decoder, z_q: torch.Tensor, targets: torch.Tensor, mask_id: int, num_steps: int = 8,
                     temperature: float = 1.0, seed: int = 0,
                     trajectory: list[TrajectoryStep] | None = None) -> SelfForcingGap:
    """How differently the decoder predicts from its own sampled context than from the teacher's codes.

    At each step of the real trajectory the revealed slots are refilled with the teacher's codes
    (same mask pattern) and the two predictive distributions on the still-masked slots compared.
    A stage-2 (self-forced) model should show a smaller gap than its stage-1 parent.
    """
    targets = _check_codes(targets, z_q, mask_id)
    trajectory = trajectory or decode_trajectory(decoder, z_q, targets.shape[1], mask_id, num_steps, temperature, seed)
    rows = []
    for step in trajectory:
        masked = step.ids_in == mask_id
        revealed = ~masked
        logits_tf = teacher_forced_logits(decoder, z_q, targets, step, mask_id)
        n_masked = masked.sum().clamp(min=1)
        kl = float((_kl_bits(logits_tf, step.logits) * masked).sum() / n_masked)
        correct = step.ids_in == targets
        rev_acc = float((correct & revealed).sum() / revealed.sum()) if revealed.any() else float("nan")
        new = step.newly_committed
        com_acc = float(((step.ids_out == targets) & new).sum() / new.sum()) if new.any() else float("nan")
        ce_own = float((_ce_bits(step.logits, targets) * masked).sum() / n_masked)
        ce_tf = float((_ce_bits(logits_tf, targets) * masked).sum() / n_masked)
        rows.append(SelfForcingRow(step.step, kl, rev_acc, com_acc, ce_own, ce_tf))
    return SelfForcingGap(tuple(rows), len(trajectory), float(temperature), targets.shape[0])


# -- cost ------------------------------------------------------------------------------------------
def committed_per_step(num_slots: int, num_steps: int) -> list[int]:
    """Slots each step of a ``num_steps`` decode commits (the official schedule; the last step commits the rest)."""
    masked, out = num_slots, []
    for step in range(num_steps):
        after = 0 if step == num_steps - 1 else num_masked_after_step(step, num_steps, num_slots, masked)
        out.append(masked - after)
        masked = after
    return out


def information_rows(images: int, num_slots: int, positions: int, num_steps: int, max_block_slots: int | None,
                     reveal_fractions: int = len(REVEAL_FRACTIONS)) -> dict[str, int]:
    """Decoder rows (one sequence through the decoder each) that the measurements of ``measure_information``
    run, by stage: the leave-one-out MI (one all-masked pass + one per image and slot), the decode trajectory,
    its teacher-forced passes (none at step 1, which sees no revealed slot), the block total correlation (at most
    one row per committed slot after a block's first, capped by ``max_block_slots``) and the reveal curve. A row
    costs about the same wherever it runs, so the time of the first rows prices the rest."""
    blocks = sum(max(0, min(c, max_block_slots or c) - 1) for c in committed_per_step(num_slots, num_steps))
    return {"leave_one_out": images * (1 + positions), "trajectory": images * num_steps,
            "teacher_forced": images * max(0, num_steps - 1), "block_tc": images * blocks,
            "reveal": images * reveal_fractions}


# -- SFTok glue ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MIInputs:
    """What the estimators need from an SFTok model and a batch of images."""

    decoder: Decoder
    z_q: torch.Tensor
    targets: torch.Tensor  # (B, S) proxy codes
    target_source: str  # "teacher" or "own decode (N steps)"
    token_ids: torch.Tensor  # (B, N) latent token ids
    mask_id: int


@torch.no_grad()
def sftok_mi_inputs(model: torch.nn.Module, images: torch.Tensor, teacher: torch.nn.Module | None = None,
                    num_steps: int | None = None, temperature: float | None = None, seed: int = 0) -> MIInputs:
    """Encode ``images`` with an SFTok model; targets are the teacher's codes, or else the model's own decode.

    Without a teacher the estimators measure the model's self-consistency rather than the data; the
    target decode uses its own random stream, independent of ``decode_trajectory(seed=seed)``.
    """
    _, info = model.encode(images, per_image=True)
    ids = info["min_encoding_indices"][:, 0]
    z_q = model.quantize.get_codebook_entry(ids)
    if teacher is not None:
        targets, source = teacher.encode(images), "teacher"
    else:
        n = int(num_steps or model.config.num_steps)
        t = model.config.randomize_temperature if temperature is None else temperature
        records = model.decode_steps(ids, n, t, derived_generator(images.device, seed, n, 1))
        targets, source = records[-1].ids_out, f"own decode ({n} steps)"
    return MIInputs(model.decoder, z_q, targets.long(), source, ids, model.config.mask_id)
