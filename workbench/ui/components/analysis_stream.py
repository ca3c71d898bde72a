"""A long analysis as a streaming Gradio event: its progress (with the first batch's time estimate) in the
status line while it runs, the results at the end, and a Cancel button that stops it after its current batch.

Gradio closes a streaming event's generator when another event lists it in ``cancels``; closing the
:func:`workbench.services.cancellable.cancellable` stream makes the work stop at its next progress report,
so the analysis lock and memory are free again for the next user within one batch.
"""
from __future__ import annotations

import html
from contextlib import closing
from typing import Any, Callable, Iterator, TypeVar

import gradio as gr

from workbench.services.cancellable import Finished, ProgressFn, cancellable

T = TypeVar("T")
CANCELLED = "Cancelled: the analysis stops after the batch it is on. Lower the image count and run again."


def running_text(fraction: float, text: str) -> str:
    return f"Running ({fraction:.0%}): {html.escape(text)}. *Cancel stops it after the current batch.*"


def stream_analysis(work: Callable[[ProgressFn], T], done: Callable[[T], tuple], outputs: int, status_at: int,
                    progress: gr.Progress, name: str = "analysis") -> Iterator[tuple]:
    """Yield a row of ``outputs`` updates per progress report (only the status at ``status_at`` changes),
    then ``done(result)``."""
    with closing(cancellable(work, name)) as events:
        for event in events:
            if isinstance(event, Finished):
                yield done(event.result)
                return
            progress(event.fraction, desc=event.text)
            row: list[Any] = [gr.skip()] * outputs
            row[status_at] = running_text(event.fraction, event.text)
            yield tuple(row)


def cancel_button(elem_id: str) -> gr.Button:
    return gr.Button("Cancel", variant="stop", elem_id=elem_id, size="sm")


def wire_cancel(button: gr.Button, status: gr.components.Component, events: list, api_name: str) -> None:
    """Clicking ``button`` cancels ``events`` (running or queued) and says so in ``status``."""
    button.click(lambda: CANCELLED, None, [status], cancels=events, api_name=api_name, show_progress="hidden")


__all__ = ["CANCELLED", "cancel_button", "running_text", "stream_analysis", "wire_cancel"]
