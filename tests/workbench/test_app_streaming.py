"""Steps stream in: the served app sends step 1's picture before the last step is decoded.

The model is slowed on purpose, deterministically: the pass (Reconstruct) or the preview decode (Generate) of
the last step waits for a gate that the test opens only after it has received the first update. If updates
came only at the end, the gate would never be opened by the test and ``waited`` would be False.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
from gradio_client import Client

from core import SFTok
from tests.app_fixtures import named
from tests.workbench.test_app_client import frames_of
from workbench.services import decoding

GATE_S = 60.0  # the gated step goes on by itself after this long (a failing test must not hang)


@pytest.fixture()
def fresh(served_app) -> Client:
    return Client(served_app[1], verbose=False, download_files=False)


class Gate:
    """Holds the last step until ``open()``; ``waited`` says whether it was opened (True) or timed out."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.waited: bool | None = None

    def hold(self) -> None:
        self.waited = self.event.wait(GATE_S)

    def open(self) -> None:
        self.event.set()


def first_update(job) -> list:
    """The first streamed output of a submitted job, as soon as it arrives."""
    deadline = time.monotonic() + GATE_S
    while not job.outputs():
        assert time.monotonic() < deadline and not job.done(), "no update arrived"
        time.sleep(0.05)
    return job.outputs()[0]


def test_reconstruct_shows_step_one_before_the_last_step_is_decoded(fresh, served_app, monkeypatch):
    served_app[0].registry.get("default")  # loaded (and warmed up, a 2-step decode) before the slowing patch:
    # run alone, the model's first load would otherwise hold the gate itself, before any update could be sent
    gate, original = Gate(), SFTok.iter_decode_steps

    def slowed(self, ids, num_steps=None, *args, **kwargs):
        for record in original(self, ids, num_steps, *args, **kwargs):
            yield record
            if record.step == record.num_steps - 2:  # the next pass is the last one
                gate.hold()

    monkeypatch.setattr(SFTok, "iter_decode_steps", slowed)
    job = fresh.submit("chelsea", "default", 4, 1.0, 4242, "confidence", api_name="/reconstruct_sample")
    first = named(first_update(job))
    assert gate.waited is None  # the last pass has not run yet
    frames = frames_of(first["scrubber"])
    assert frames["steps"] >= 1 and frames["steps"] < 4 and frames["preview"][0].startswith("data:image/png")
    assert "decoding step" in first["scrubber"] and "of 4" in first["status"]
    assert "Step 1 / 4" in frames["info"][0]
    gate.open()
    final = named(job.result())
    assert gate.waited is True
    done = frames_of(final["scrubber"])
    assert done["steps"] == 4 and "decoding step" not in final["scrubber"]
    assert done["preview"][0] == frames["preview"][0]  # step 1's picture did not change when the rest came
    assert path_of_gif(fresh.predict("confidence", api_name="/rec_export_gif"))
    updates = [named(o) for o in job.outputs()]
    counts = [frames_of(u["scrubber"])["steps"] for u in updates]
    assert counts == sorted(counts) and counts[-1] == 4 and len(set(counts)) >= 2


def path_of_gif(file_update) -> bool:
    value = file_update["value"]
    return str(value["path"] if isinstance(value, dict) else value).endswith(".gif")


def test_generate_shows_step_one_before_the_last_preview_is_decoded(fresh, monkeypatch):
    gate, original, calls = Gate(), decoding.render_ids_preview, []

    def slowed(tokenizer, candidates, precision, skip_levels):
        calls.append(1)
        if len(calls) == 3:  # the last of 3 steps' previews
            gate.hold()
        return original(tokenizer, candidates, precision, skip_levels)

    monkeypatch.setattr(decoding, "render_ids_preview", slowed)
    job = fresh.submit("checkpoints/generator", "default", 2, 3, 2.0, 1.0, 4243, "confidence", api_name="/generate")
    image, status, scrubber, *_ = first_update(job)
    assert gate.waited is None
    assert frames_of(scrubber)["steps"] in (1, 2) and re.search(r"[12] of 3 steps shown", status)
    gate.open()
    _, status, scrubber, *_ = job.result()
    assert gate.waited is True and frames_of(scrubber)["steps"] == 3 and "steps shown" not in status
