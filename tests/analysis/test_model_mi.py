"""Model-based MI estimators on toy decoders with known answers, and the SFTok glue."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.model_mi import (bootstrap_mean_ci, decode_trajectory, leave_one_out_mi, self_forcing_gap,
                               sftok_mi_inputs, trajectory_information, with_teacher_logits)
from analysis.seeding import derived_generator

from .conftest import ContextFreeDecoder, CopyLeftDecoder, OracleDecoder

V, S, MASK = 8, 16, 8


def constant_rows(batch: int, seed: int = 0) -> torch.Tensor:
    """Every slot of an image holds the same code: left neighbours are perfect predictors."""
    codes = torch.randint(0, V, (batch, 1), generator=torch.Generator().manual_seed(seed))
    return codes.expand(batch, S).contiguous()


def test_loo_mi_is_zero_for_a_decoder_that_ignores_context() -> None:
    codes = torch.randint(0, V, (6, S), generator=torch.Generator().manual_seed(0))
    hints = torch.randint(0, 5, (6, S), generator=torch.Generator().manual_seed(1))
    res = leave_one_out_mi(ContextFreeDecoder(5, V), codes, hints, MASK, num_bootstrap=200)
    assert np.abs(res.bits).max() < 1e-5
    assert np.abs(res.ci_low).max() < 1e-5 and np.abs(res.ci_high).max() < 1e-5
    assert res.ce_all_bits.mean() > 1.0  # the codes are not predictable from the hints
    assert res.per_image_bits.shape == (6, S)


def test_loo_mi_of_a_neighbour_copier_matches_the_analytic_value() -> None:
    a = 3.0
    res = leave_one_out_mi(CopyLeftDecoder(V, MASK, a), constant_rows(5), torch.zeros(5, 1), MASK, batch_size=7,
                           num_bootstrap=200)
    ce_loo = -math.log2(math.exp(a) / (math.exp(a) + V - 1))
    assert res.ce_all_bits == pytest.approx(np.full(S, math.log2(V)), abs=1e-5)
    assert res.bits[0] == pytest.approx(0.0, abs=1e-5)  # slot 0 has no left neighbour
    assert res.bits[1:] == pytest.approx(np.full(S - 1, math.log2(V) - ce_loo), abs=1e-5)
    assert res.mean_bits == pytest.approx((S - 1) / S * (math.log2(V) - ce_loo), abs=1e-5)
    subset = leave_one_out_mi(CopyLeftDecoder(V, MASK, a), constant_rows(5), torch.zeros(5, 1), MASK,
                              positions=[0, 5], num_bootstrap=0)
    assert subset.positions.tolist() == [0, 5]
    assert subset.bits == pytest.approx([0.0, res.bits[5]], abs=1e-6)
    assert np.isnan(subset.ci_low).all()


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_images() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, (20, 1)), rng.normal(1.0, 1.0, (500, 1))
    lo_s, hi_s = bootstrap_mean_ci(small, 500, 0.95, seed=0)
    lo_l, hi_l = bootstrap_mean_ci(large, 500, 0.95, seed=0)
    assert lo_s[0] < small.mean() < hi_s[0]
    assert (hi_l - lo_l)[0] < 0.5 * (hi_s - lo_s)[0]
    assert (hi_l - lo_l)[0] == pytest.approx(2 * 1.96 / math.sqrt(500), rel=0.25)


def test_trajectory_information_is_zero_without_context_and_positive_with_copying() -> None:
    codes = torch.randint(0, V, (4, S), generator=torch.Generator().manual_seed(2))
    hints = torch.randint(0, 5, (4, S), generator=torch.Generator().manual_seed(3))
    free = trajectory_information(ContextFreeDecoder(5, V), hints, codes, MASK, num_steps=4, temperature=1.0, seed=0)
    assert len(free.rows) == 4
    for row in free.rows:
        assert row.info_gain_bits_per_slot == pytest.approx(0.0, abs=1e-5)
        assert row.block_tc_bits == pytest.approx(0.0, abs=1e-5)
    assert sum(r.committed for r in free.rows) == pytest.approx(S)
    assert free.rows[0].mask_ratio_in == 1.0
    copy = trajectory_information(CopyLeftDecoder(V, MASK), torch.zeros(4, 1), constant_rows(4), MASK, num_steps=4,
                                  temperature=1.0, seed=0)
    assert copy.rows[0].info_gain_bits_per_slot == pytest.approx(0.0, abs=1e-6)  # nothing revealed yet
    assert sum(r.block_tc_bits for r in copy.rows) > 0.5
    assert all(r.block_tc_bits >= -1e-5 for r in copy.rows)  # a copier can only gain from more context
    capped = trajectory_information(CopyLeftDecoder(V, MASK), torch.zeros(4, 1), constant_rows(4), MASK, num_steps=4,
                                    seed=0, max_block_slots=2)
    assert max(r.block_slots for r in capped.rows) <= 2


def test_teacher_gain_along_the_trajectory_matches_the_copiers_analytic_value() -> None:
    """With the teacher's codes at the committed slots, a left-neighbour copier on constant rows gains exactly
    log2(V) - CE(copy) at every still-masked slot whose left neighbour is revealed, and nothing elsewhere."""
    a = 3.0
    ce_copy = -math.log2(math.exp(a) / (math.exp(a) + V - 1))
    decoder, codes = CopyLeftDecoder(V, MASK, a), constant_rows(4, seed=6)
    steps = decode_trajectory(decoder, torch.zeros(4, 1), S, MASK, num_steps=4, temperature=1.0, seed=1)
    info = trajectory_information(decoder, torch.zeros(4, 1), codes, MASK, num_steps=4, seed=1, trajectory=steps)
    for step, row in zip(steps, info.rows):
        masked = step.ids_in == MASK
        helped = masked[:, 1:] & ~masked[:, :-1]  # still masked, left neighbour revealed
        expected = float(helped.sum()) * (math.log2(V) - ce_copy) / 4
        assert row.teacher_gain_bits_per_image == pytest.approx(expected, abs=1e-4)
        assert row.ce_context_free_bits == pytest.approx(math.log2(V), abs=1e-5)
    assert info.rows[0].teacher_gain_bits_per_image == 0.0  # nothing revealed at step 1
    assert sum(r.teacher_gain_bits_per_image for r in info.rows) > 1.0
    # its own first codes are blind guesses, so its own context is worth less than the teacher's
    assert sum(r.info_gain_bits_per_image for r in info.rows) < sum(r.teacher_gain_bits_per_image for r in info.rows)
    # the teacher-forced passes, run once and kept on the steps, give the same numbers to every reader
    kept = with_teacher_logits(decoder, torch.zeros(4, 1), codes, steps, MASK)
    assert trajectory_information(decoder, torch.zeros(4, 1), codes, MASK, num_steps=4, seed=1, trajectory=kept) == info
    assert repr(self_forcing_gap(decoder, torch.zeros(4, 1), codes, MASK, 4, trajectory=kept)) == \
        repr(self_forcing_gap(decoder, torch.zeros(4, 1), codes, MASK, 4, trajectory=steps))  # repr: nan == nan
    free = trajectory_information(ContextFreeDecoder(5, V), torch.randint(0, 5, (4, S)), codes, MASK, num_steps=4)
    assert all(r.teacher_gain_bits_per_image == pytest.approx(0.0, abs=1e-5) for r in free.rows)


def test_self_forcing_gap_on_known_decoders() -> None:
    codes = torch.randint(0, V, (4, S), generator=torch.Generator().manual_seed(4))
    oracle = self_forcing_gap(OracleDecoder(V), codes, codes, MASK, num_steps=4, temperature=1.0)
    assert math.isnan(oracle.rows[0].revealed_accuracy)
    assert all(r.committed_accuracy == 1.0 for r in oracle.rows)
    assert all(r.revealed_accuracy == 1.0 for r in oracle.rows[1:])
    assert all(r.kl_bits == pytest.approx(0.0, abs=1e-6) for r in oracle.rows)
    hints = torch.randint(0, 5, (4, S), generator=torch.Generator().manual_seed(5))
    free = self_forcing_gap(ContextFreeDecoder(5, V), hints, codes, MASK, num_steps=4, temperature=1.0)
    assert all(r.kl_bits == pytest.approx(0.0, abs=1e-6) for r in free.rows)
    # The copier samples its first codes blindly, so its own context is wrong and its predictions move.
    copy = self_forcing_gap(CopyLeftDecoder(V, MASK), torch.zeros(4, 1), constant_rows(4), MASK, num_steps=4,
                            temperature=1.0, seed=0)
    assert copy.rows[1].revealed_accuracy < 0.6
    assert copy.mean_kl_bits > 0.1
    assert copy.rows[1].ce_teacher_bits < copy.rows[1].ce_own_bits


def test_trajectory_reproduces_the_models_own_decode(tiny_model) -> None:
    ids = torch.randint(0, tiny_model.config.codebook_size, (2, 64), generator=torch.Generator().manual_seed(0))
    z_q = tiny_model.quantize.get_codebook_entry(ids)
    with torch.no_grad():
        records = tiny_model.decode_steps(ids, 3, 1.0, derived_generator("cpu", 7, 3))
    traj = decode_trajectory(tiny_model.decoder, z_q, 256, tiny_model.config.mask_id, 3, 1.0, seed=7)
    for rec, step in zip(records, traj):
        assert torch.equal(rec.ids_out, step.ids_out)
        assert torch.allclose(rec.logits, step.logits, atol=1e-5)


def test_sftok_inputs_use_teacher_codes_or_the_models_own_decode(tiny_model, tiny_teacher, photos) -> None:
    images = photos[:2]
    with_teacher = sftok_mi_inputs(tiny_model, images, tiny_teacher)
    assert with_teacher.target_source == "teacher"
    assert torch.equal(with_teacher.targets, tiny_teacher.encode(images))
    assert with_teacher.z_q.shape == (2, 16, 1, 64) and with_teacher.token_ids.shape == (2, 64)
    own = sftok_mi_inputs(tiny_model, images, num_steps=2, seed=0)
    assert own.target_source == "own decode (2 steps)"
    assert own.targets.shape == (2, 256) and int(own.targets.max()) < tiny_model.config.mask_id
    traj = decode_trajectory(own.decoder, own.z_q, 256, own.mask_id, 2, 1.0, seed=0)
    assert not torch.equal(traj[-1].ids_out, own.targets)  # independent random streams, not a copy
    res = leave_one_out_mi(own.decoder, own.targets, own.z_q, own.mask_id, positions=[0, 17], num_bootstrap=0)
    assert np.isfinite(res.bits).all()
    with pytest.raises(ValueError, match="mask id"):
        leave_one_out_mi(own.decoder, torch.full((2, 256), own.mask_id), own.z_q, own.mask_id)


def test_slot_restricted_decoder_gives_the_same_estimates(tiny_model) -> None:
    """The fast path (last block and head on the queried slot only) changes cost, not numbers."""
    from analysis.model_mi import accepts_slots

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, tiny_model.config.codebook_size, (2, 64), generator=gen)
    z_q = tiny_model.quantize.get_codebook_entry(ids)
    codes = torch.randint(0, 256, (2, 256), generator=gen)
    full_only = lambda proxy, z: tiny_model.decoder(proxy, z)  # noqa: E731 - hides ``slots``
    assert accepts_slots(tiny_model.decoder) and not accepts_slots(full_only)
    fast = leave_one_out_mi(tiny_model.decoder, codes, z_q, 256, positions=[0, 100, 255], num_bootstrap=0)
    slow = leave_one_out_mi(full_only, codes, z_q, 256, positions=[0, 100, 255], num_bootstrap=0)
    np.testing.assert_allclose(fast.per_image_bits, slow.per_image_bits, atol=1e-4)


class RowCounter(torch.nn.Module):
    """A decoder that counts the rows (sequences) it is given, delegating to ``inner``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, proxy_ids: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        self.rows += proxy_ids.shape[0]
        return self.inner(proxy_ids, z_q)


@pytest.mark.parametrize("steps, cap", [(4, 2), (8, None), (3, 4)])
def test_information_rows_count_every_decoder_row_the_measurements_run(steps, cap) -> None:
    """The Information screen's time estimate prices rows: the count must be the rows the estimators really run."""
    from analysis.model_mi import committed_per_step, information_rows, reveal_curve

    b, positions = 3, [1, 4, 9, 15]
    codes = torch.randint(0, V, (b, S), generator=torch.Generator().manual_seed(5))
    hints = torch.randint(0, 5, (b, S), generator=torch.Generator().manual_seed(6))
    decoder = RowCounter(ContextFreeDecoder(5, V))
    leave_one_out_mi(decoder, codes, hints, MASK, positions, num_bootstrap=0)
    loo = decoder.rows
    trajectory = decode_trajectory(decoder, hints, S, MASK, steps, 1.0, 0)
    assert [int(t.newly_committed[0].sum()) for t in trajectory] == committed_per_step(S, steps)
    trajectory = with_teacher_logits(decoder, hints, codes, trajectory, MASK)
    trajectory_information(decoder, hints, codes, MASK, steps, 1.0, 0, trajectory, cap)
    self_forcing_gap(decoder, hints, codes, MASK, steps, 1.0, 0, trajectory)
    reveal_curve(decoder, hints, codes, MASK)
    rows = information_rows(b, S, len(positions), steps, cap)
    assert rows["leave_one_out"] == loo == b * (1 + len(positions))
    assert sum(rows.values()) == decoder.rows
