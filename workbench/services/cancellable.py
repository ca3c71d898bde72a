"""Long work as a stream of progress updates that a screen can show and cancel.

The work runs in its own thread and reports through a progress callback; the caller iterates updates.
Closing the iterator (Gradio closes a streaming event's generator when its Cancel button fires, or the
browser goes away) stops the work at its next progress report: the callback raises
:class:`AnalysisCancelled` there, so locks and device memory are released between batches, not mid-batch.
Closing never waits for the work, so the server's event loop is not held up by a batch in flight.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
ProgressFn = Callable[[float, str], None]


class AnalysisCancelled(Exception):
    """The user cancelled the work; raised inside it at its next progress report."""


@dataclass(frozen=True)
class Update:
    fraction: float
    text: str


@dataclass(frozen=True)
class Finished(Generic[T]):
    result: T


def cancellable(work: Callable[[ProgressFn], T], name: str = "analysis") -> Iterator[Update | Finished[T]]:
    """Run ``work(progress)`` in a thread; yield its updates, then ``Finished(result)``; re-raise its error."""
    events: queue.Queue[Update | Finished[T] | BaseException] = queue.Queue()
    stop = threading.Event()

    def progress(fraction: float, text: str) -> None:
        if stop.is_set():
            raise AnalysisCancelled(f"{name}: cancelled")
        events.put(Update(fraction, text))

    def run() -> None:
        try:
            events.put(Finished(work(progress)))
        except BaseException as err:  # handed to the caller's thread, which raises it
            events.put(err)

    threading.Thread(target=run, name=f"{name}-work", daemon=True).start()
    try:
        while True:
            event = events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Finished):
                return
    finally:
        stop.set()


__all__ = ["AnalysisCancelled", "Finished", "Update", "cancellable"]
