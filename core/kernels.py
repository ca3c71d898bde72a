"""Linear layers through oneDNN on the CPU, where torch's default BLAS leaves half the chip idle.

``F.linear`` on CPU calls the BLAS torch was built with (MKL). On AMD Zen CPUs MKL runs its AVX2
code path, while oneDNN (already inside torch, used for convolutions) runs AVX-512: measured here
(AMD EPYC, 2 cores) 205 vs 410 GFLOP/s for the decoder's (642 x 768) @ (768 x 3072) products, with
results equal up to float rounding (~1e-6). :func:`linear` takes the oneDNN route for float32 CPU
tensors outside autocast (with gradients: an autograd function whose backward products run through
oneDNN too) and falls back to ``F.linear`` everywhere else (GPU, autocast).
``use_onednn(False)`` switches it off, e.g. to compare.

bf16 inference: a bf16 weight with a float32 input casts the input to bf16 (the output is bf16), so a
module whose matmul weights are bf16 copies (:class:`Bf16Copies`) runs its products at the bf16 rate
while the rest (LayerNorm, residual stream) stays float32. On CPUs with AVX512-BF16/AMX bf16 products
go through oneDNN too: the fastest route measured on an Intel Xeon with AMX (2 cores), 2.5 TFLOP/s on a
(642x768)@(768x3072) product, against 2.1 for ``F.linear`` on bf16 tensors, 1.7 under autocast (which
re-casts the fp32 weight on every call) and 0.36-0.39 in fp32 (oneDNN or MKL, about equal on that CPU).
"""
from __future__ import annotations

import copy
import itertools
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["none", "gelu", "tanh"]

_state: dict = {"enabled": True, "counts": None}
LOW_PRECISION = (torch.bfloat16, torch.float16)


def _onednn_linear_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    return op if torch.backends.mkldnn.is_available() else None


_ONEDNN_LINEAR = _onednn_linear_op()


def _onednn_bf16_supported() -> bool:
    try:
        return _ONEDNN_LINEAR is not None and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_BF16 = _onednn_bf16_supported()


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


@contextmanager
def count_linears() -> Iterator[Counter]:
    """Count the calls of :func:`linear` by (device type, compute dtype, route) while inside; e.g.
    ``Counter({('cpu', 'torch.bfloat16', 'onednn'): 776})``. For checks, not for timing."""
    previous = _state["counts"]
    counts: Counter = Counter()
    _state["counts"] = counts
    try:
        yield counts
    finally:
        _state["counts"] = previous


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (onednn_enabled() and x.device.type == "cpu" and x.dtype == weight.dtype
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _ONEDNN_BF16))
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
           activation: Activation = "none", residual: torch.Tensor | None = None) -> torch.Tensor:
    """``activation(F.linear(x, weight, bias))`` (+ ``residual``); on CPU float32 through oneDNN, with the
    activation and the residual add fused into the product at inference.

    Outside autocast, a float ``x`` whose dtype differs from the weight's is cast to it (and so is the
    bias): a bf16 weight computes in bf16 and returns bf16, an fp32 weight after bf16 layers returns fp32.
    ``residual`` (the output's shape) is added after the activation; the sum has the residual's dtype.
    """
    if x.dtype != weight.dtype and x.is_floating_point() and not torch.is_autocast_enabled(x.device.type):
        x = x.to(weight.dtype)
    if bias is not None and bias.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        bias = bias.to(weight.dtype)
    eligible = _eligible(x, weight)
    if _state["counts"] is not None:
        _state["counts"][(x.device.type, str(x.dtype), "onednn" if eligible else "torch")] += 1
    if eligible and not torch.is_grad_enabled():
        if residual is None:
            return _product(x, weight, bias, activation)
        if activation == "none" and residual.dtype == x.dtype and residual.shape[:-1] == x.shape[:-1]:
            return _ONEDNN_LINEAR.binary(x, residual, weight, bias, "add")
        y = _product(x, weight, bias, activation)
    else:
        if not eligible:
            y = F.linear(x, weight, bias)
        elif not (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
            y = _product(x, weight, bias)
        elif x.dtype == torch.float32:
            y = _OneDNNLinear.apply(x, weight, bias)
        else:  # bf16 training: torch's kernels and autograd
            y = F.linear(x, weight, bias)
        if activation == "gelu":
            y = F.gelu(y)
        elif activation == "tanh":
            y = torch.tanh(y)
    return y if residual is None else residual + y


# -- bf16 copies of modules, made once ------------------------------------------------------------
ConvertRule = Callable[[str, torch.Tensor], bool]


def _signature(module: nn.Module) -> tuple:
    """Identity, storage, version, device and dtype of every parameter and buffer: any change (an
    optimizer step, ``load_state_dict``, ``.to()``, ``p.data = ...``) changes it."""
    return tuple((t, t.data_ptr(), t._version, t.device, t.dtype)
                 for t in itertools.chain(module.parameters(), module.buffers()))


def _same_signature(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x[0] is y[0] and x[1:] == y[1:] for x, y in zip(a, b))


def low_precision_copy(module: nn.Module, convert: ConvertRule, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """An eval-mode, gradient-free copy of ``module`` whose parameters named (qualified name) by
    ``convert`` are ``dtype`` copies; the other parameters and all buffers share the source's memory.
    The source's hooks are not carried over."""
    memo: dict[int, object] = {}
    for name, p in module.named_parameters():
        data = p.detach().to(dtype) if convert(name, p) and p.is_floating_point() else p.detach()
        memo[id(p)] = nn.Parameter(data, requires_grad=False)
    for b in module.buffers():
        memo[id(b)] = b
    twin = copy.deepcopy(module, memo)
    for m in twin.modules():
        for attr, value in vars(m).items():
            if "hooks" in attr and isinstance(value, dict):
                value.clear()
    return twin.eval()


class Bf16Copies:
    """bf16 copies of a model's modules for bf16 inference, made on first use and remade when any
    parameter or buffer of the source changes (checked on every :meth:`get`: a few microseconds per
    tensor). The weights are cast once, not on every call as under autocast."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self._entries: dict[str, tuple[nn.Module, tuple, nn.Module]] = {}

    def get(self, key: str, module: nn.Module, convert: ConvertRule) -> nn.Module:
        signature = _signature(module)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is module and _same_signature(entry[1], signature):
            return entry[2]
        self._entries.pop(key, None)  # free the stale copy before making the new one
        twin = low_precision_copy(module, convert, self.dtype)
        self._entries[key] = (module, signature, twin)
        return twin

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
