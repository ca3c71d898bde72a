"""Linear layers through oneDNN on the CPU, where torch's default BLAS leaves half the chip idle.

``F.linear`` on CPU calls the BLAS torch was built with (MKL). On AMD Zen CPUs MKL runs its AVX2
code path, while oneDNN (already inside torch, used for convolutions) runs AVX-512: measured here
(AMD EPYC, 2 cores) 205 vs 410 GFLOP/s for the decoder's (642 x 768) @ (768 x 3072) products, with
results equal up to float rounding (~1e-6). :func:`linear` takes the oneDNN route for float32 CPU
tensors outside autocast (with gradients: an autograd function whose backward products run through
oneDNN too) and falls back to ``F.linear`` everywhere else, so GPU and bf16 paths are untouched.
``use_onednn(False)`` switches it off, e.g. to compare.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F

Activation = Literal["none", "gelu", "tanh"]

_state = {"enabled": True}


def _onednn_linear_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    return op if torch.backends.mkldnn.is_available() else None


_ONEDNN_LINEAR = _onednn_linear_op()


def onednn_available() -> bool:
    """True when this torch build can run fp32 linears through oneDNN."""
    return _ONEDNN_LINEAR is not None


def onednn_enabled() -> bool:
    return _state["enabled"] and _ONEDNN_LINEAR is not None


@contextmanager
def use_onednn(enabled: bool) -> Iterator[None]:
    """Temporarily route CPU linears (inference and training) through oneDNN (True) or torch's BLAS (False)."""
    previous = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = previous


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (onednn_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and x.numel() > 0)


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "none"):
    return _ONEDNN_LINEAR(x, weight, bias, activation, [], "none" if activation == "gelu" else "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x @ W^T + b with all three products of forward and backward on oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _product(grad, weight.t())  # (..., O) @ (O, I)
        if ctx.needs_input_grad[1]:
            g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
            grad_w = _product(g2.t(), x2.t())  # (O, M) @ (M, I)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: Activation = "none") -> torch.Tensor:
    """``activation(F.linear(x, weight, bias))``; on CPU float32 through oneDNN (fused at inference)."""
    if _eligible(x, weight):
        if not torch.is_grad_enabled():
            return _product(x, weight, bias, activation)
        if x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad):
            y = _OneDNNLinear.apply(x, weight, bias)
        else:
            y = _product(x, weight, bias)
    else:
        y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    if activation == "tanh":
        return torch.tanh(y)
    return y
