"""Inference matmuls through oneDNN on the CPU, where torch's default BLAS leaves half the chip idle.

``F.linear`` on CPU calls the BLAS torch was built with (MKL). On AMD Zen CPUs MKL runs its AVX2
code path, while oneDNN (already inside torch, used for convolutions) runs AVX-512: measured here
(AMD EPYC, 2 cores) 205 vs 410 GFLOP/s for the decoder's (642 x 768) @ (768 x 3072) products, with
results equal up to float rounding (~1e-6). :func:`linear` takes the oneDNN route when it is safe
(CPU, float32, no autograd, no autocast) and falls back to ``F.linear`` everywhere else, so GPU,
training and bf16 paths are untouched. ``use_onednn(False)`` switches it off, e.g. to compare.
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
    """Temporarily route CPU inference linears through oneDNN (True) or torch's BLAS (False)."""
    previous = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = previous


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_state["enabled"] and _ONEDNN_LINEAR is not None and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and x.numel() > 0)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: Activation = "none") -> torch.Tensor:
    """``activation(F.linear(x, weight, bias))``; on CPU inference one fused oneDNN call."""
    if _eligible(x, weight):
        return _ONEDNN_LINEAR(x, weight, bias, activation, [], "none" if activation == "gelu" else "")
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    if activation == "tanh":
        return torch.tanh(y)
    return y
