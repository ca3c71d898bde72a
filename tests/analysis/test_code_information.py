"""analysis.code_information on decoders whose answers are known: one that reads the codes off its tokens
(the tokens tell everything) and one that ignores its tokens and predicts the codes' marginal."""
from __future__ import annotations

import pytest
import torch

from analysis.code_information import ScreenDefaults, code_information, tokens_tell
from analysis.estimators import entropy

SLOTS, VOCAB = 16, 8  # a 4x4 code grid over 8 codes; mask id = VOCAB


class Teacher:
    """Codes are a fixed function of the image: the quantised mean of each 4x4-pixel cell's red channel."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        cells = torch.nn.functional.avg_pool2d(images[:, :1], 4).flatten(1)  # (B, 16)
        return (cells * VOCAB).long().clamp(0, VOCAB - 1)


class Quantize:
    def get_codebook_entry(self, ids: torch.Tensor) -> torch.Tensor:
        return ids[:, None, None, :].float()  # z_q carries the token ids themselves


class Config:
    mask_id, num_steps, randomize_temperature = VOCAB, 8, 1.0


class FakeModel:
    """Tokens = the teacher's codes; the decoder either reads them (oracle) or returns ``prior`` logits."""

    def __init__(self, prior: torch.Tensor | None = None, reads_revealed: bool = False) -> None:
        self.teacher, self.quantize, self.config, self.prior = Teacher(), Quantize(), Config(), prior
        self.reads_revealed = reads_revealed

    def encode(self, images: torch.Tensor, per_image: bool = False):
        return None, {"min_encoding_indices": self.teacher.encode(images)[:, None]}

    def decoder(self, ids: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        if self.reads_revealed:  # the prior with nothing revealed; certain and right once any code is revealed
            codes = torch.nn.functional.one_hot(z_q[:, 0, 0].long(), VOCAB).float() * 40.0
            any_revealed = (ids != VOCAB).any(dim=1)[:, None, None]
            return torch.where(any_revealed, codes, self.prior.expand(ids.shape[0], SLOTS, VOCAB))
        if self.prior is not None:
            return self.prior.expand(ids.shape[0], SLOTS, VOCAB).clone()
        codes = z_q[:, 0, 0].long()
        return torch.nn.functional.one_hot(codes, VOCAB).float() * 40.0  # certain and right


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_tokens_that_hold_the_codes_tell_the_whole_marginal_entropy(images: torch.Tensor) -> None:
    info = code_information(FakeModel(), Teacher(), images, ScreenDefaults(images=8, slots=4), batch_size=10)
    codes = Teacher().encode(images).flatten().numpy()
    assert info.marginal_entropy_bits == pytest.approx(entropy(codes, "miller_madow"), abs=1e-9)
    assert info.ce_given_tokens_bits == pytest.approx(0.0, abs=1e-6)
    assert info.tokens_bits_per_slot == pytest.approx(info.marginal_entropy_bits, abs=1e-6)
    assert info.tokens_bits_per_image == pytest.approx(info.marginal_entropy_bits * SLOTS, abs=1e-4)
    # Everything is known from step 1 on: revealing codes adds nothing, and leaving one out costs nothing.
    assert info.gain_bits_per_image == pytest.approx([0.0] * 8, abs=1e-4)
    assert info.groups == 3 and info.groups_all_positive == 0  # 24 images in groups of 8; no gain is positive
    assert info.teacher_gain_bits_per_image == pytest.approx([0.0] * 8, abs=1e-4)  # the teacher's codes add nothing
    assert info.teacher_gain_bits_per_image_all == pytest.approx([0.0] * 8, abs=1e-4)
    assert info.teacher_groups_all_positive == 0
    assert info.loo_slots == 4 and info.loo_slots_above_zero == 0
    assert info.reveal_fractions == (0.0, 0.5, 0.9)
    assert info.ce_hidden_by_reveal_bits == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)


def test_a_decoder_that_ignores_its_tokens_sits_at_the_marginal(images: torch.Tensor) -> None:
    codes = Teacher().encode(images).flatten()
    freq = torch.bincount(codes, minlength=VOCAB).double() / codes.numel()
    prior = torch.log(freq.clamp(min=1e-12)).float()
    info = code_information(FakeModel(prior), Teacher(), images, ScreenDefaults(images=8, slots=4))
    plug_in = float(-(freq[freq > 0] * torch.log2(freq[freq > 0])).sum())  # CE of the marginal under itself
    assert info.ce_given_tokens_bits == pytest.approx(plug_in, abs=1e-4)
    assert abs(info.tokens_bits_per_slot) < 0.1  # only the Miller-Madow correction separates the two
    assert info.ce_ci[0] < info.ce_given_tokens_bits < info.ce_ci[1]
    # revealing codes cannot help a decoder that reads nothing: the hidden codes stay at the plug-in entropy
    assert info.ce_hidden_by_reveal_bits == pytest.approx((plug_in,) * 3, abs=0.15)


def test_the_reveal_curve_falls_for_a_decoder_that_reads_revealed_codes(images: torch.Tensor) -> None:
    codes = Teacher().encode(images).flatten()
    freq = torch.bincount(codes, minlength=VOCAB).double() / codes.numel()
    prior = torch.log(freq.clamp(min=1e-12)).float()
    info = code_information(FakeModel(prior, reads_revealed=True), Teacher(), images, ScreenDefaults(images=8, slots=4))
    nothing, half, most = info.ce_hidden_by_reveal_bits
    assert nothing == pytest.approx(info.ce_given_tokens_bits, abs=1e-4) and nothing > 1.0
    assert half == pytest.approx(0.0, abs=1e-6) and most == pytest.approx(0.0, abs=1e-6)


def test_too_few_images_for_the_screen_defaults_is_refused(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        code_information(FakeModel(), Teacher(), images[:5], ScreenDefaults(images=8))


def test_tokens_tell_alone_matches_the_full_summary_in_any_batch_size(images: torch.Tensor) -> None:
    """The evaluation's training-photo measurement: only the tokens' share, the same number as code_information."""
    codes = Teacher().encode(images).flatten()
    freq = torch.bincount(codes, minlength=VOCAB).double() / codes.numel()
    uniform = torch.zeros(VOCAB)  # a decoder that says nothing: log2(8) = 3 bits per code
    info = code_information(FakeModel(uniform), Teacher(), images, ScreenDefaults(images=8, slots=4))
    for batch in (5, 24):
        tell = tokens_tell(FakeModel(uniform), Teacher(), images, batch_size=batch)
        assert tell.per_image_ce() == pytest.approx([3.0] * 24, abs=1e-5)
        assert tell.bits_per_slot() == pytest.approx(info.tokens_bits_per_slot, abs=1e-9)
    plug_in = float(-(freq[freq > 0] * torch.log2(freq[freq > 0])).sum())
    assert tell.bits_per_slot() == pytest.approx(plug_in - 3.0, abs=0.1)  # negative: worse than the marginal
    assert tokens_tell(FakeModel(), Teacher(), images).bits_per_slot() == pytest.approx(tell.marginal_bits(), abs=1e-6)
