"""Known answers small enough to check by hand: OptVQ assignment, the arccos schedule, the
low-resolution upsampling conv, and the row-restricted transformer block."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.maskgit_vqgan import upsample2x_conv3x3
from core.optvq import OptVQ
from core.schedules import arccos_mask_ratio, num_masked_after_step
from core.vit import ResidualAttentionBlock


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def quantizer(code_angles: list[float], mode: str = "sinkhorn") -> OptVQ:
    """2-D OptVQ whose codewords are unit vectors at the given angles (shared_linear = identity)."""
    vq = OptVQ(codebook_size=len(code_angles), token_size=2, mode=mode)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[unit(a) for a in code_angles]]))
    return vq


def tokens(angles: list[float], length: float = 3.0) -> torch.Tensor:
    """z (1, 2, 1, N) holding vectors at the given angles (their length is normalised away)."""
    return (length * torch.tensor([unit(a) for a in angles])).t().reshape(1, 2, 1, len(angles))


def indices(vq: OptVQ, angles: list[float]) -> list[int]:
    return vq(tokens(angles))[1]["min_encoding_indices"].flatten().tolist()


def test_optvq_vectors_on_their_codes_agree_with_nearest():
    assert indices(quantizer([0, 90]), [0, 90]) == [0, 1]
    assert indices(quantizer([0, 90], "nearest"), [0, 90]) == [0, 1]
    assert indices(quantizer([0, 120, 240]), [240, 0, 120]) == [2, 0, 1]


def test_optvq_sinkhorn_balances_away_from_nearest():
    """Vectors at 10 and 30 degrees are both nearest to the code at 0 degrees (distances
    2 sin 5 = 0.174 and 2 sin 15 = 0.518 vs 2 sin 40 = 1.286 and 2 sin 30 = 1.0 to the code at 90).
    With uniform marginals the 2x2 plan converges to P00 P11 / (P01 P10) = exp(-10 (d00 + d11 - d01 - d10))
    = exp(6.29) >> 1: the diagonal, so the 30-degree vector goes to the 90-degree code."""
    assert indices(quantizer([0, 90], "nearest"), [10, 30]) == [0, 0]
    assert indices(quantizer([0, 90]), [10, 30]) == [0, 1]
    assert indices(quantizer([0, 90]), [30, 10]) == [1, 0]
    # Three vectors all nearest to the code at 0 degrees are spread over three codes at 0/120/240.
    assert indices(quantizer([0, 120, 240], "nearest"), [5, 40, -40]) == [0, 0, 0]
    assert indices(quantizer([0, 120, 240]), [5, 40, -40]) == [0, 1, 2]


def test_optvq_outputs_are_normalised_codewords_with_losses():
    vq = quantizer([0, 90])
    with torch.no_grad():
        z_q, info = vq(tokens([10, 30]))
    assert z_q.shape == (1, 2, 1, 2)
    assert torch.allclose(z_q[0, :, 0].t(), torch.tensor([unit(0), unit(90)]), atol=1e-6)
    # commitment = 0.25 * mean squared distance between the unit vectors and their codewords
    sq = (2 * math.sin(math.radians(5))) ** 2 + (2 * math.sin(math.radians(30))) ** 2
    assert float(info["codebook_loss"]) == pytest.approx(sq / 4, rel=1e-5)
    assert float(info["commitment_loss"]) == pytest.approx(0.25 * sq / 4, rel=1e-5)
    # z_q is the straight-through value z + (e - z).detach(): the codewords up to rounding.
    assert torch.allclose(vq.get_codebook_entry(info["min_encoding_indices"]), z_q, atol=1e-6)


def test_arccos_schedule_known_values():
    assert arccos_mask_ratio(0.0) == 1.0
    assert arccos_mask_ratio(1.0) == 0.0
    assert arccos_mask_ratio(0.5) == pytest.approx(2 / 3, abs=1e-15)  # acos(1/2) = pi/3
    assert arccos_mask_ratio(math.sqrt(0.5)) == pytest.approx(0.5, abs=1e-15)  # acos = pi/4
    assert float(arccos_mask_ratio(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(2 / 3)
    left, masked = [], 256
    for step in range(7):
        masked = num_masked_after_step(step, 8, 256, masked)
        left.append(masked)
    assert left == [235, 214, 193, 170, 145, 117, 82]
    assert [math.floor(64 * arccos_mask_ratio((s + 1) / 8)) for s in range(7)] == [58, 53, 48, 42, 36, 29, 20]
    assert num_masked_after_step(0, 8, 256, num_masked_now=100) == 99  # at least one commit
    assert num_masked_after_step(0, 8, 256, num_masked_now=1) == 1  # never below one


def test_upsample_conv_known_answer():
    """conv3x3 (all ones, zero padding) of the nearest-upsampled [[1, 2], [3, 4]]: window sums by hand."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[4, 8, 10, 8], [10, 18, 21, 16], [14, 24, 27, 20], [12, 20, 22, 16]], dtype=torch.float32)
    assert torch.equal(upsample2x_conv3x3(x, conv)[0, 0], expected)
    assert torch.equal(conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))[0, 0], expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_conv_equals_conv_of_upsampled(channels_last):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 6, 3, padding=1)
    x = torch.randn(2, 8, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = upsample2x_conv3x3(x, conv)
    assert out.shape == (2, 6, 10, 14)
    assert torch.allclose(out, conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_upsample_conv_gradients_match():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    upsample2x_conv3x3(x, conv).square().sum().backward()
    fast = (x.grad.clone(), conv.weight.grad.clone())
    x.grad, conv.weight.grad = None, None
    conv(F.interpolate(x, scale_factor=2.0, mode="nearest")).square().sum().backward()
    assert torch.allclose(fast[0], x.grad, atol=1e-4) and torch.allclose(fast[1], conv.weight.grad, atol=1e-4)


def test_row_restricted_block_equals_rows_of_full_block():
    torch.manual_seed(2)
    block = ResidualAttentionBlock(width=32, heads=4).eval()
    x = torch.randn(2, 9, 32)
    full = block(x)
    rows = torch.tensor([[0, 4, 8], [7, 7, 1]])
    assert torch.allclose(block(x, rows=rows), full.gather(1, rows[..., None].expand(-1, -1, 32)), atol=1e-6)
    assert torch.allclose(block(x, rows=slice(2, 5)), full[:, 2:5], atol=1e-6)


def test_optvq_per_image_assignment_is_each_image_alone():
    """Jointly, four vectors share two codes two apiece, so 10 and 30 degrees both take the code at 0 and
    80/85 both the code at 90. Alone, each image balances its own two vectors over both codes (for
    80/85: 80 to 0 and 85 to 90 costs 2 sin 40 + 2 sin 2.5 = 1.37 < 2 sin 5 + 2 sin 42.5 = 1.53)."""
    vq = quantizer([0, 90])
    batch = torch.cat([tokens([10, 30]), tokens([80, 85])])
    joint = vq(batch)[1]["min_encoding_indices"].reshape(2, 2).tolist()
    per_image = vq(batch, per_image=True)[1]["min_encoding_indices"].reshape(2, 2).tolist()
    assert joint == [[0, 0], [1, 1]]
    assert per_image == [[0, 1], [0, 1]] == [indices(vq, [10, 30]), indices(vq, [80, 85])]
    # nearest assignment has no coupling to undo
    near = quantizer([0, 90], "nearest")
    assert near(batch, per_image=True)[1]["min_encoding_indices"].tolist() == near(batch)[1]["min_encoding_indices"].tolist()
