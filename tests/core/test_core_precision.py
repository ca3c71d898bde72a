"""bf16 is offered only where it is native: the capability report (simulated both ways) and the fallback."""
from __future__ import annotations

import pytest
import torch

from core import precision
from core.precision import Bf16Support, bf16_support, effective_precision, resolve_precision


def cpu_reports(monkeypatch, avx512_bf16: bool, amx: bool, onednn: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)


def test_a_cpu_with_amx_and_onednn_bf16_is_native(monkeypatch):
    cpu_reports(monkeypatch, avx512_bf16=True, amx=True, onednn=True)
    assert bf16_support("cpu") == Bf16Support("cpu", True, "this CPU has AVX512-BF16 and AMX (oneDNN bf16 kernels)")
    assert effective_precision("bf16", "cpu") == ("bf16", "")


def test_an_avx2_cpu_is_not_native_and_bf16_falls_back_to_fp32(monkeypatch):
    cpu_reports(monkeypatch, avx512_bf16=False, amx=False, onednn=False)
    support = bf16_support("cpu")
    assert not support.native
    assert support.reason == "this CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated and slower than fp32"
    ran, note = effective_precision("bf16", "cpu")
    assert ran == "fp32" and note.startswith("bf16 is not native on cpu (this CPU has neither") and "fp32" in note
    assert effective_precision("fp32", "cpu") == ("fp32", "")
    with pytest.warns(UserWarning, match="bf16 is not native on cpu"):
        assert resolve_precision("bf16", "cpu") == "fp32"


def test_cpu_features_without_onednn_bf16_are_not_native(monkeypatch):
    cpu_reports(monkeypatch, avx512_bf16=True, amx=False, onednn=False)
    support = bf16_support("cpu")
    assert not support.native and "oneDNN reports no bf16 support although the CPU has AVX512-BF16" in support.reason


@pytest.mark.parametrize("native", [True, False])
def test_cuda_follows_torch_cuda_is_bf16_supported(monkeypatch, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4" if not native else "NVIDIA H100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    support = bf16_support("cuda")
    assert support.native is native
    assert support.reason == ("NVIDIA H100 supports bf16" if native else "Tesla T4 has no native bf16")
    assert effective_precision("bf16", "cuda")[0] == ("bf16" if native else "fp32")


def test_absent_cuda_and_other_devices_are_not_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bf16_support("cuda:0") == Bf16Support("cuda:0", False, "no CUDA device is available")
    assert not bf16_support("mps").native


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision: expected 'fp32' or 'bf16', got 'fp16'"):
        effective_precision("fp16")
