"""Whether bf16 is native on a device, and the precision a decode should really run in.

bf16 decoding only pays where the hardware multiplies bf16 natively: CUDA GPUs that report bf16
support, and CPUs with AVX512-BF16 or AMX tiles (what oneDNN's bf16 kernels need). Elsewhere torch
emulates it, which on an AVX2-only CPU was 5.5x slower than fp32 for the same decode, so callers ask
:func:`bf16_support` first and fall back to fp32 with the reason (:func:`effective_precision`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .sftok import Precision, check_precision


@dataclass(frozen=True)
class Bf16Support:
    """``native``: bf16 products run in hardware on ``device``; ``reason``: why (not), in words."""

    device: str
    native: bool
    reason: str


def _cpu_flag(name: str) -> bool:
    """A CPU capability as torch reports it (``torch.cpu._is_<name>_supported``); False if this torch lacks it."""
    check = getattr(torch.cpu, f"_is_{name}_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _onednn_bf16() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_support(device: torch.device | str = "cpu") -> Bf16Support:
    """Whether bf16 is native on ``device`` (CUDA: ``torch.cuda.is_bf16_supported``; CPU: AVX512-BF16 or
    AMX as torch and oneDNN report them); other device types are reported as not native."""
    dev = torch.device(device)
    name = str(dev)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return Bf16Support(name, False, "no CUDA device is available")
        gpu = torch.cuda.get_device_name(dev.index if dev.index is not None else torch.cuda.current_device())
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # the current GPU; boxes hold one kind
        return Bf16Support(name, native, f"{gpu} {'supports' if native else 'has no native'} bf16")
    if dev.type == "cpu":
        features = [label for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX")) if _cpu_flag(flag)]
        onednn = _onednn_bf16()
        if features and onednn:
            return Bf16Support(name, True, f"this CPU has {' and '.join(features)} (oneDNN bf16 kernels)")
        why = ("this CPU has neither AVX512-BF16 nor AMX" if not features
               else f"oneDNN reports no bf16 support although the CPU has {' and '.join(features)}")
        return Bf16Support(name, False, f"{why}, so bf16 would be emulated and slower than fp32")
    return Bf16Support(name, False, f"bf16 decoding is not measured on {dev.type} devices; fp32 is used")


def effective_precision(requested: str, device: torch.device | str = "cpu",
                        support: Bf16Support | None = None) -> tuple[Precision, str]:
    """(precision to run, note). bf16 where it is not native becomes fp32 and the note says why;
    otherwise the note is empty. ``support`` overrides the capability check (tests, callers that cached it)."""
    precision = check_precision(requested)
    if precision != "bf16":
        return precision, ""
    support = support or bf16_support(device)
    if support.native:
        return "bf16", ""
    return "fp32", f"bf16 is not native on {support.device} ({support.reason}): running fp32 instead"


def resolve_precision(requested: str, device: torch.device | str = "cpu") -> Precision:
    """:func:`effective_precision` for command lines: the fallback to fp32 is a ``UserWarning``."""
    precision, note = effective_precision(requested, device)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    return precision


__all__ = ["Bf16Support", "bf16_support", "effective_precision", "resolve_precision"]
