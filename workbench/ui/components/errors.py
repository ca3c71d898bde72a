"""Expected failures become messages in the browser, never stack traces or a dead server."""
from __future__ import annotations

import functools
from typing import Any, Callable

import gradio as gr

from workbench.services.decoding import SettingsError, TraceExpired
from workbench.io.images import ImageInputError
from workbench.services.model_registry import ModelUnavailable
from workbench.io.workspace import PathRefused

USER_ERRORS: tuple[type[BaseException], ...] = (ImageInputError, SettingsError, ModelUnavailable, PathRefused,
                                                TraceExpired, ValueError, FileNotFoundError)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a callback: the backend's expected exceptions turn into ``gr.Error`` with their message.

    ValueError is included because backend modules (core configs, analysis) report bad input with
    it and name the field; anything else is a bug and keeps its traceback in the server log.
    """
    if getattr(fn, "__wrapped_user_errors__", False):
        return fn

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as err:
            raise gr.Error(str(err), title="Cannot do that") from err

    wrapped.__wrapped_user_errors__ = True  # type: ignore[attr-defined]
    return wrapped
