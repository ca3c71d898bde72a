"""Dropdown updates whose value is always one of their choices.

Gradio checks a dropdown's value against its choices when the value comes back as an input. An update
that sends new choices without the value (or a value the new choices lack) leaves the browser holding
a value the server refuses, and every later event that reads the dropdown fails: a timer that reads it
fails every tick, and the screen freezes. Every list-refreshing update goes through :func:`refreshed`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr

Choice = str | tuple[str, Any]


def choice_values(choices: Sequence[Choice]) -> list[Any]:
    return [c[1] if isinstance(c, tuple) else c for c in choices]


def kept_value(choices: Sequence[Choice], current: Any, multiselect: bool = False,
               fallback: Callable[[list[Any]], Any] | Any = None) -> Any:
    """``current`` where the choices still hold it (for a multiselect: the items they hold), else ``fallback``
    (a value, or a function of the available values; it must itself be among them or it is dropped)."""
    values = choice_values(choices)
    if multiselect:
        kept = [v for v in (current or []) if v in values]
        if kept:
            return kept
        wanted = fallback(values) if callable(fallback) else fallback
        return [v for v in (wanted or []) if v in values]
    if current in values:
        return current
    wanted = fallback(values) if callable(fallback) else fallback
    return wanted if wanted in values else None


def refreshed(choices: Sequence[Choice], current: Any, multiselect: bool = False,
              fallback: Callable[[list[Any]], Any] | Any = None) -> gr.Dropdown:
    """A dropdown update that sends the new choices and a value among them, together."""
    return gr.Dropdown(choices=list(choices), value=kept_value(choices, current, multiselect, fallback))
