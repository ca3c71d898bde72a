"""The inference fast paths: oneDNN linears (core.kernels) and the opt-in bf16 decoding mode."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core import InputError, SFTok, load_pretrained
from core.kernels import linear, onednn_available, onednn_enabled, use_onednn

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.mark.parametrize("activation", ["none", "gelu", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch_for_3d_strided_and_sliced_inputs(activation: str, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 40, generator=gen).transpose(0, 1)  # (3, 7, 40), not contiguous
    weight = torch.randn(50, 40, generator=gen)[10:]  # a row slice, as the packed in_proj is used
    bias = torch.randn(40, generator=gen) if with_bias else None
    expected = {"none": lambda y: y, "gelu": F.gelu, "tanh": torch.tanh}[activation](F.linear(x, weight, bias))
    with torch.no_grad():
        got = linear(x, weight, bias, activation)
    assert got.shape == (3, 7, 40)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_linear_gradients_match_torch(activation: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x0, w0, b0 = torch.randn(2, 9, 12, generator=gen), torch.randn(5, 12, generator=gen), torch.randn(5, generator=gen)
    upstream = torch.randn(2, 9, 5, generator=gen)
    grads = {}
    for route in (True, False):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        with use_onednn(route):
            (linear(x, w, b, activation) * upstream).sum().backward()
        grads[route] = (x.grad, w.grad, b.grad)
    for fast, reference in zip(grads[True], grads[False]):
        assert fast is not None and float(fast.abs().sum()) > 0
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_linear_leaves_autocast_to_torch() -> None:
    x, weight = torch.randn(4, 8), torch.randn(3, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, weight).dtype == torch.bfloat16


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear")
def test_use_onednn_switches_the_route_and_restores_it() -> None:
    assert onednn_enabled()
    with use_onednn(False):
        assert not onednn_enabled()
    assert onednn_enabled()


def test_onednn_and_blas_routes_give_the_same_tokens(tiny_model: SFTok, tiny_ids: torch.Tensor) -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    outs = {}
    for route in (True, False):
        with use_onednn(route):
            with torch.no_grad():
                z, info = tiny_model.encode(images)
            proxy, logits = tiny_model.decode_ids(tiny_ids, 8, 1.0, torch.Generator().manual_seed(2))
            outs[route] = (info["min_encoding_indices"], z, proxy, logits)
    fast, blas = outs[True], outs[False]
    assert torch.equal(fast[0], blas[0]) and torch.equal(fast[2], blas[2])
    torch.testing.assert_close(fast[1], blas[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast[3], blas[3], rtol=1e-4, atol=1e-4)


def test_unknown_precision_is_rejected_before_any_work(tiny_model: SFTok, tiny_ids: torch.Tensor) -> None:
    with pytest.raises(InputError, match="precision"):
        tiny_model.decode_tokens(tiny_ids, precision="fp8")


def test_bf16_mode_agrees_with_fp32_on_the_default_model() -> None:
    model = load_pretrained(ASSETS / "default" / "sftok", strict=True)
    size = model.config.image_size
    images = torch.stack([
        torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((size, size)))).permute(2, 0, 1).float() / 255
        for p in sorted((ASSETS / "samples").glob("*.png"))])
    with torch.no_grad():
        ids = model.encode(images)[1]["min_encoding_indices"]
    fp32 = model.decode_tokens(ids, 8, 0.0)
    bf16 = model.decode_tokens(ids, 8, 0.0, precision="bf16")
    proxy32, _ = model.decode_ids(ids, 8, 0.0)
    proxy16, _ = model.decode_ids(ids, 8, 0.0, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert float((proxy32 == proxy16).float().mean()) >= 0.95  # measured: 1.0 on the shipped samples
    assert float((bf16 - fp32).abs().mean()) < 0.01  # measured: 0.002
    records = model.decode_steps(ids[:2], 8, 0.0, previews=[7], precision="bf16")
    assert records[-1].logits.dtype == torch.float32 and records[-1].preview.dtype == torch.float32
