"""Long analyses stream their progress and stop at the next batch when the screen closes the stream."""
import threading

import pytest

from workbench.services.cancellable import AnalysisCancelled, Finished, Update, cancellable


def test_updates_then_the_result():
    def work(progress):
        for i in range(3):
            progress(i / 3, f"batch {i + 1}")
        return 42

    events = list(cancellable(work))
    assert events == [Update(0.0, "batch 1"), Update(1 / 3, "batch 2"), Update(2 / 3, "batch 3"), Finished(42)]


def test_closing_the_stream_stops_the_work_at_its_next_batch_and_releases_its_lock():
    lock, ended, batches = threading.Lock(), threading.Event(), []
    first_seen = threading.Event()

    def work(progress):
        with lock:
            try:
                for i in range(1000):
                    batches.append(i)
                    progress(i / 1000, f"batch {i}")
                    first_seen.wait()  # the next batch starts only after the caller has closed the stream
            except AnalysisCancelled:
                ended.set()
                raise
        return "all done"

    stream = cancellable(work)
    assert next(stream) == Update(0.0, "batch 0")
    stream.close()
    first_seen.set()
    assert ended.wait(10)
    with lock:  # the work let go of it
        pass
    assert batches == [0, 1]  # batch 1 was in flight when the stream closed; none started after it


def test_an_error_in_the_work_reaches_the_caller():
    def work(progress):
        progress(0.0, "start")
        raise ValueError("images: must be a whole number")

    stream = cancellable(work)
    assert next(stream) == Update(0.0, "start")
    with pytest.raises(ValueError, match="whole number"):
        next(stream)
