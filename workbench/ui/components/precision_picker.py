"""The decode-precision setting of Reconstruct and Generate: bf16 offered only where it is native.

Where bf16 would be emulated (an AVX2-only CPU: 5.5x slower than fp32 for the same decode) the control
is shown disabled with the reason, so nobody picks a slower, less exact mode by accident. After a bf16
decode the status line says how many final ids agree with the same decode in fp32.
"""
from __future__ import annotations

import html

import gradio as gr

from core.precision import Bf16Support
from workbench.services.traces import StepTrace

PRECISION_CHOICES = [("fp32", "fp32"), ("bf16", "bf16")]


def precision_radio(support: Bf16Support, name: str) -> gr.Radio:
    """fp32 / bf16 radio; interactive only when bf16 is native on the app's device (``support``)."""
    if support.native:
        info = f"bf16: faster decoder passes, some ids differ from fp32 (shown after a decode); {support.reason}"
    else:
        info = f"bf16 is off: {support.reason}"
    return gr.Radio(PRECISION_CHOICES, value="fp32", label="Precision", info=info, interactive=support.native,
                    elem_id=f"{name}-precision")


def precision_line(trace: StepTrace) -> str:
    """The status-line sentence about precision ('' for a plain fp32 decode)."""
    if trace.precision_note:
        return f"⚠ {html.escape(trace.precision_note)}."
    if trace.fp32_agreement is not None:
        return (f"Precision {trace.precision}: {trace.fp32_agreement:.1%} of the final proxy ids agree with the "
                "same decode in fp32.")
    return ""


__all__ = ["PRECISION_CHOICES", "precision_line", "precision_radio"]
