"""Expected failures become messages in the browser, never stack traces or a dead server.

A user error (a bad file, a setting out of range, no image yet) logs one line, answers the request
with a ``gr.Error`` (a toast, and an error for API callers) and is remembered for its browser session,
so a screen can keep it readable in its status line (:func:`keep_error_visible`) after the toast fades.
A device out of memory is answered the same way (what was tried, what to lower) and the server keeps serving.
Anything else is a bug and keeps its traceback in the server log.
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import gradio as gr
import torch
from gradio.context import LocalContext

from workbench.io.images import ImageInputError
from workbench.io.workspace import PathRefused
from workbench.services.decoding import SettingsError, TraceExpired
from workbench.services.devices import out_of_memory_message, release_cached_memory
from workbench.services.lru import LRU
from workbench.services.model_registry import ModelUnavailable

log = logging.getLogger("workbench.ui")
USER_ERRORS: tuple[type[BaseException], ...] = (ImageInputError, SettingsError, ModelUnavailable, PathRefused,
                                                TraceExpired, ValueError, FileNotFoundError)
_last_error: LRU[str, str] = LRU(4096)  # browser session -> its last user error


def _session() -> str:
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) or ""


def user_error(message: str, title: str = "Cannot do that", where: str = "") -> gr.Error:
    """Log one line, remember the message for this session, and return the ``gr.Error`` to raise."""
    log.warning("user error%s: %s", f" in {where}" if where else "", message)
    _last_error.put(_session(), message)
    return gr.Error(message, title=title, print_exception=False)


@contextmanager
def _as_user_errors(where: str) -> Iterator[None]:
    """The backend's expected exceptions inside become a ``gr.Error`` with their message (see :func:`user_errors`)."""
    try:
        yield
    except gr.Error as err:
        raise user_error(str(err.message), err.title, where) from None
    except USER_ERRORS as err:
        raise user_error(str(err), where=where) from None
    except torch.OutOfMemoryError as err:
        release_cached_memory()
        raise user_error(out_of_memory_message(err, where), "Out of device memory", where) from None


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a callback: the backend's expected exceptions turn into a ``gr.Error`` with their message.

    ValueError is included because backend modules (core configs, analysis) report bad input with
    it and name the field. ``torch.OutOfMemoryError`` (CUDA's included) frees the cached device memory and
    says what was tried and what to lower. A generator callback (one that streams its updates) stays a
    generator, so Gradio still streams it; an error after some updates ends the stream with the message.
    """
    if getattr(fn, "__wrapped_user_errors__", False):
        return fn

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streamed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with _as_user_errors(fn.__name__):
                yield from fn(*args, **kwargs)

        streamed.__wrapped_user_errors__ = True  # type: ignore[attr-defined]
        return streamed

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _as_user_errors(fn.__name__):
            return fn(*args, **kwargs)

    wrapped.__wrapped_user_errors__ = True  # type: ignore[attr-defined]
    return wrapped


def error_text(message: str) -> str:
    """How a screen's status line shows an error (Markdown)."""
    return f"<span class='status-error'>⚠ **Cannot do that:** {html.escape(message)}</span>"


def keep_error_visible(event: Any, status: gr.components.Component,
                       resets: Sequence[tuple[gr.components.Component, Any]] = (),
                       untouched: Sequence[gr.components.Component] = ()) -> None:
    """When ``event`` fails, write its message into ``status`` (it stays until the next action) and set
    each ``(component, value)`` of ``resets`` (e.g. clear an upload box so a refused file does not look loaded).

    ``untouched`` are the failed event's other outputs: they keep their content but lose the failure's
    "Error" badge (the message is in the status line)."""
    def show() -> Any:
        message = _last_error.get(_session()) or "the last action failed; see the message above"
        values = (error_text(message), *(value for _, value in resets), *(gr.skip() for _ in untouched))
        return values if len(values) > 1 else values[0]  # one output takes the value itself, not a 1-tuple

    event.failure(show, None, [status, *(c for c, _ in resets), *untouched], show_progress="hidden",
                  api_visibility="private")
